"""The bundled default model on the three shared datasets' test splits (slow: 2,883 pictures),
and on group pictures composed of dataset faces (one generated face decides)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.bundle import bundled_model_dir, read_meta

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASET = DATASETS / "faces"
DATASET_NAMES = ("faces", "faces-extra", "portraits")
TEST_PICTURES = 2883  # faces 1,091 + faces-extra 1,410 + portraits 382 (after 2026-12-05)
TEST_ONLY = ("press_and_old_photos", "t2i_recent")
# The product targets from the issue; docs/default-model.md says why they are not met yet.
TARGET_ACCURACY = 0.97
TARGET_AUC = 0.995
TARGET_SOURCE_ACCURACY = 0.92
TARGET_BUNDLE_BYTES = 16_000_000
# The previous default (mobilenet_ms v2, faces and faces-extra) on the same three test splits
# (docs/default-model.md): what the new model must not fall below where it was good.

pytestmark = pytest.mark.slow


def _bundle() -> Path:
    bundle = bundled_model_dir()
    if not (bundle / "model.keras").is_file():
        pytest.skip("no bundled default model")
    return bundle


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    bundle = _bundle()
    if not (DATASET / "test").is_dir():
        pytest.skip(f"dataset not found at {DATASET}")
    from training.datasets import load_layout, merge
    from training.evaluate import evaluate

    splits = merge([load_layout(DATASETS / name) for name in DATASET_NAMES])
    return evaluate(bundle, splits.test).metrics


def test_bundled_metadata_is_complete() -> None:
    bundle = _bundle()
    meta = read_meta(bundle)
    training = meta.training
    assert training["command"].startswith("deepfake-detector train")
    assert training["dataset"]["distribution"]["test"]["total"] == TEST_PICTURES
    assert meta.faces and meta.combine and meta.uncertain_band is not None
    assert meta.views == ("whole", "patch", "face") and meta.combine["face_alone"] is not None
    assert len(meta.data_fingerprint) == 64
    assert {"validate", "test"} <= set(meta.metrics)
    assert sorted(p.name for p in bundle.iterdir()) == ["model.json", "model.keras", "model.tflite"]
    # The figures the product is judged by travel with the model.
    test = meta.metrics["test"]
    assert len(test["invariance"]["chains"]) == 8 and test["fairness"]["attributes"]
    assert set(training["quality"]["per_source"]) >= set(test["per_source"])
    loso = training["leave_one_source_out"]
    trained = set(training["dataset"]["distribution"]["train"]["sources"])
    assert set(loso["sources"]) == trained and loso["mean_auc"] is not None


def test_the_test_only_sources_chose_nothing() -> None:
    # Never trained, validated or calibrated on, never held out (chosen) nor ranked against.
    training = read_meta(_bundle()).training
    dist = training["dataset"]["distribution"]
    for split in ("train", "validate"):
        assert not set(TEST_ONLY) & set(dist[split]["sources"]), split
    assert set(TEST_ONLY) <= set(dist["test"]["sources"])
    assert sorted(training["dataset"]["unseen_sources"]) == sorted(TEST_ONLY)
    assert sorted(training["leave_one_source_out"]["not_held_out"]) == sorted(TEST_ONLY)
    assert training["litert"]["split"] == training["keras_weights"]["split"] == "validate"


def test_the_uncertain_band_holds_at_most_five_percent_of_validation() -> None:
    calibration = read_meta(_bundle()).training["calibration"]
    assert calibration["validation_band"]["uncertain_share"] <= 0.05 + 1e-9
    assert calibration["uncertain_max_share"] == 0.05


def test_bundled_litert_model_is_the_recorded_choice() -> None:
    # Training compared float32 and int8 LiteRT exports on the validation split and kept one.
    bundle = _bundle()
    litert = read_meta(bundle).training["litert"]
    chosen = litert["quantization"]
    assert (bundle / "model.tflite").stat().st_size == litert[chosen]["bytes"]
    from training.litert import keeps_accuracy

    if chosen != "float32":
        assert keeps_accuracy(litert["float32"], litert[chosen])
    else:  # both smaller exports were measured and lost accuracy overall or on some source
        for smaller in ("dynamic_range_int8", "float16_weights"):
            assert not keeps_accuracy(litert["float32"], litert[smaller]), smaller


def test_bundled_keras_model_is_the_recorded_choice_and_agrees_with_litert() -> None:
    # model.keras carries int8 or float16 weights only where that kept validation accuracy by
    # the rule; float32 ships when both smaller forms were measured and failed it.
    bundle = _bundle()
    keras_weights = read_meta(bundle).training["keras_weights"]
    if keras_weights["weights"] == "float32":
        from training.litert import keeps_accuracy

        for smaller in ("int8", "float16_weights"):
            assert not keeps_accuracy(keras_weights["float32"], keras_weights[smaller]), smaller
    from detector.classifier import Classifier

    size = read_meta(bundle).input_size
    batch = np.random.default_rng(3).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    keras_scores = Classifier.load(bundle, backend="keras").predict(batch)
    litert_scores = Classifier.load(bundle, backend="litert").predict(batch)
    np.testing.assert_allclose(keras_scores, litert_scores, atol=0.05)


def test_bundled_model_reproduces_its_recorded_test_metrics(metrics: dict[str, Any]) -> None:
    # Serving (decode + Classifier, LiteRT when available) must give what training measured.
    recorded = read_meta(_bundle()).metrics["test"]
    assert metrics["n"] == recorded["n"] == TEST_PICTURES
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.01)
    assert metrics["roc_auc"] == pytest.approx(recorded["roc_auc"], abs=0.005)


def test_bundled_model_keeps_what_the_previous_default_did_well(metrics: dict[str, Any]) -> None:
    # The previous default scored 0.92 on these splits; v3 trades some of that for pictures
    # from outside the datasets (docs/default-model.md), but not the sources it had right.
    assert metrics["accuracy"] >= 0.85 and metrics["roc_auc"] >= 0.94
    assert metrics["ece"] <= 0.05
    for source in ("generated_photos", "sd_pollinations", "sfhq_t2i", "utkface", "web_photos"):
        assert metrics["per_source"][source]["accuracy"] >= 0.95, source
    for source in ("pixabay_portraits", "congress_portraits", "taiwanese_studio"):
        assert metrics["per_source"][source]["accuracy"] >= 0.95, source  # clean real portraits


@pytest.mark.xfail(
    strict=True,
    reason="not met yet: face swaps, StyleGAN vs FFHQ, DFDC (docs/default-model.md)",
)
def test_bundled_model_meets_the_product_targets(metrics: dict[str, Any]) -> None:
    size = sum(p.stat().st_size for p in _bundle().iterdir())
    assert size <= TARGET_BUNDLE_BYTES, f"bundle is {size:,} bytes"
    assert metrics["accuracy"] >= TARGET_ACCURACY
    assert metrics["roc_auc"] >= TARGET_AUC
    for source, m in metrics["per_source"].items():
        target = 0.90 if source in TEST_ONLY else TARGET_SOURCE_ACCURACY
        assert m["accuracy"] >= target, source


def _dataset_faces(dataset: str, source: str, n: int) -> list[np.ndarray]:
    import csv

    from PIL import Image

    root = DATASETS / dataset
    with open(root / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == source and r["split"] == "test"]
    return [np.asarray(Image.open(root / r["path"]).convert("RGB")) for r in rows[:n]]


def _group(faces: list[np.ndarray], gap: int = 48) -> bytes:
    """Faces side by side on a grey canvas, as a JPEG (a group photo of dataset faces)."""
    import io

    from PIL import Image

    side = 256
    tiles = [np.asarray(Image.fromarray(f).resize((side, side))) for f in faces]
    canvas = np.full((side + 2 * gap, len(tiles) * (side + gap) + gap, 3), 120, np.uint8)
    for i, tile in enumerate(tiles):
        left = gap + i * (side + gap)
        canvas[gap : gap + side, left : left + side] = tile
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_one_generated_face_decides_a_group_picture() -> None:
    bundle = _bundle()
    if not (DATASETS / "faces" / "manifest.csv").is_file():
        pytest.skip(f"datasets not found at {DATASETS}")
    from detector.classifier import Classifier
    from detector.imageio import LoadLimits

    classifier = Classifier.load(bundle)
    real = _dataset_faces("faces", "ffhq", 24)
    fake = _dataset_faces("faces", "stylegan_140k", 8)
    calls = {"real only": [], "one fake": []}
    for i in range(8):
        trio = real[3 * i : 3 * i + 3]
        for kind, faces in (("real only", trio), ("one fake", [trio[0], fake[i], trio[2]])):
            views = classifier.spec.decode(_group(faces), LoadLimits())
            assert len(views.faces) == 3, "every face of the group is found"
            picture = classifier.score_pictures([views])[0]
            calls[kind].append(classifier.label_for(picture.score).value)
            # The rule: the picture is never called less generated than its most generated face.
            face_logit = max(np.log(f.score / (1 - f.score)) for f in picture.faces)
            rule = classifier.rule
            if rule.face_alone is not None:
                own = 1 / (
                    1
                    + np.exp(
                        -(
                            rule.face_alone * face_logit * classifier.meta.temperature
                            + rule.face_alone_bias
                        )
                    )
                )
                assert picture.score >= own - 1e-6
    flagged = {k: sum(c != "real" for c in v) for k, v in calls.items()}
    assert flagged["one fake"] >= 6, calls  # at least 6 of the 8 pictures with a generated face
    assert flagged["real only"] <= 2, calls  # at most 2 of the 8 all-real ones
