"""One verdict from score and provenance; the uncertain band in model.json, config and serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detector.bundle import META_FILE, ModelMeta, read_meta
from detector.classifier import Classifier
from detector.decision import DecidedBy, Decision, UncertainBand, decide, model_label
from detector.labels import Label
from detector.provenance import Finding, Kind, Strength

DECLARES = Finding(Kind.C2PA, "manifest by ImageMaker, valid signature", Strength.DECLARES_AI)
CAMERA = Finding(Kind.EXIF, "camera 'Canon EOS R5'", Strength.CAMERA_CLAIM)
HINT = Finding(Kind.EXIF, "software 'Midjourney' names an image generator", Strength.HINT)
BAND = UncertainBand(0.4, 0.7)


@pytest.mark.parametrize(
    ("score", "label"),
    [
        (0.1, Label.REAL),
        (0.39, Label.REAL),
        (0.4, Label.UNCERTAIN),
        (0.69, Label.UNCERTAIN),
        (0.7, Label.AI),
        (0.95, Label.AI),
    ],
)
def test_model_label_with_a_band(score: float, label: Label) -> None:
    assert model_label(score, 0.5, BAND) is label


def test_model_label_without_a_band_is_the_threshold() -> None:
    assert model_label(0.5, 0.5) is Label.AI
    assert model_label(0.49, 0.5, UncertainBand(0.5, 0.5)) is Label.REAL  # empty band


def test_provenance_declaring_ai_wins_over_any_score() -> None:
    for score in (0.01, 0.55, 0.99):
        assert decide(score, 0.5, BAND, [CAMERA, DECLARES]) == Decision(
            Label.AI, DecidedBy.PROVENANCE
        )


def test_camera_claims_and_hints_never_decide() -> None:
    assert decide(0.9, 0.5, BAND, [CAMERA]) == Decision(Label.AI, DecidedBy.MODEL)
    assert decide(0.1, 0.5, BAND, [HINT]) == Decision(Label.REAL, DecidedBy.MODEL)
    assert decide(0.5, 0.5, BAND, [CAMERA, HINT]) == Decision(Label.UNCERTAIN, DecidedBy.MODEL)


@pytest.mark.parametrize("pair", [(0.7, 0.3), (-0.1, 0.5), (0.5, 1.5), (float("nan"), 0.5)])
def test_a_bad_band_is_refused(pair: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="uncertain band"):
        UncertainBand.of(pair)


def test_band_of_nothing_is_none() -> None:
    assert UncertainBand.of(None) is None and UncertainBand.of(()) is None
    with pytest.raises(ValueError, match=r"\[lo, hi\]"):
        UncertainBand.of((0.1, 0.2, 0.3))


def test_uncertain_is_not_a_model_class() -> None:
    with pytest.raises(ValueError, match="not a model class"):
        _ = Label.UNCERTAIN.class_index


# --- model.json ---------------------------------------------------------------------------


def _meta(**changes: object) -> ModelMeta:
    return ModelMeta(version="v1", arch="tiny", input_size=32, **changes)  # type: ignore[arg-type]


def test_band_and_precision_round_trip_through_model_json(tmp_path: Path) -> None:
    meta = _meta(uncertain_band=(0.35, 0.72), uncertain_precision=0.95)
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["uncertain_band"] == [0.35, 0.72]
    assert ModelMeta.from_dict(data) == meta


def test_an_old_model_json_loads_as_no_band() -> None:
    data = _meta().to_dict()
    del data["uncertain_band"], data["uncertain_precision"]
    loaded = ModelMeta.from_dict(data)
    assert loaded.uncertain_band is None and loaded.uncertain_precision is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uncertain_band", [0.8, 0.2]),
        ("uncertain_band", [0.1]),
        ("uncertain_band", "wide"),
        ("uncertain_precision", 0.0),
        ("uncertain_precision", 1.5),
    ],
)
def test_a_bad_band_in_model_json_names_the_field(field: str, value: object) -> None:
    data = _meta().to_dict() | {field: value}
    with pytest.raises(ValueError, match=field):
        ModelMeta.from_dict(data)


# --- serving --------------------------------------------------------------------------------


@pytest.fixture
def banded_bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """The tiny model with an uncertain band written into its model.json."""
    bundle = tmp_path / "banded"
    shutil.copytree(tiny_bundle, bundle)
    data = json.loads((bundle / META_FILE).read_text())
    data.update(uncertain_band=[0.3, 0.8], uncertain_precision=0.9)
    (bundle / META_FILE).write_text(json.dumps(data))
    return bundle


def test_classifier_uses_the_model_band_and_config_overrides_it(
    tiny_bundle: Path, banded_bundle: Path
) -> None:
    assert read_meta(tiny_bundle).uncertain_band is None
    assert Classifier.load(tiny_bundle, backend="litert").band is None
    own = Classifier.load(banded_bundle, backend="litert")
    assert own.band == UncertainBand(0.3, 0.8)
    assert own.label_for(0.5) is Label.UNCERTAIN and own.label_for(0.9) is Label.AI
    assert Classifier.load(banded_bundle, backend="litert", uncertain_band=()).band is None
    wider = Classifier.load(banded_bundle, backend="litert", uncertain_band=(0.1, 0.95))
    assert wider.label_for(0.9) is Label.UNCERTAIN
    with pytest.raises(ValueError, match="uncertain band"):
        Classifier.load(banded_bundle, backend="litert", uncertain_band=(0.9, 0.1))
