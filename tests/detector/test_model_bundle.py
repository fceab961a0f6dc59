"""Model bundles: metadata validation, atomic saving, LiteRT export, the model contract."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from detector import modelio
from detector.bundle import (
    KERAS_FILE,
    META_FILE,
    TFLITE_FILE,
    ModelMeta,
    bundled_model_dir,
    new_version,
    read_meta,
    save_bundle,
)


def meta(**overrides: Any) -> ModelMeta:
    """A valid ModelMeta with some fields overridden."""
    fields: dict[str, Any] = {"version": "tiny-20260101-000000-abcd", "arch": "tiny"}
    fields["input_size"] = 32
    fields.update(overrides)
    return ModelMeta(**fields)


class FakeModel:
    """Stands in for a Keras model at the file boundary: save() writes, export() may fail."""

    def __init__(self, *, fail_save: bool = False) -> None:
        self.fail_save = fail_save

    def save(self, path: Path) -> None:
        Path(path).write_bytes(b"PK partial zip")
        if self.fail_save:
            raise OSError("No space left on device")

    def export(self, path: str, **kwargs: Any) -> None:
        raise RuntimeError("export is not supported by this model")


# --- ModelMeta ----------------------------------------------------------------------------


def test_meta_round_trips_through_json() -> None:
    original = meta(
        threshold=0.42,
        temperature=1.7,
        metrics={"roc_auc": 0.93, "per_source": {"a": 1}},
        training={"epochs": 3, "history": {"loss": [0.7, 0.5]}},
        data_fingerprint="abc123",
    )
    restored = ModelMeta.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored == original
    assert restored.class_names == ("real", "ai")
    assert original.to_dict()["class_names"] == ["real", "ai"]


def test_meta_defaults_are_sane() -> None:
    default = meta()
    assert (default.threshold, default.temperature, default.format_version) == (0.5, 1.0, 1)
    assert default.created_at.endswith("+00:00")


def test_integer_numbers_are_accepted() -> None:
    data = meta().to_dict() | {"threshold": 1, "temperature": 2}
    restored = ModelMeta.from_dict(data)
    assert (restored.threshold, restored.temperature) == (1.0, 2.0)
    assert isinstance(restored.threshold, float)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", ""),
        ("arch", 7),
        ("input_size", "32"),
        ("input_size", 0),
        ("input_size", True),
        ("class_names", ["real"]),
        ("class_names", "real,ai"),
        ("threshold", 1.5),
        ("threshold", "0.5"),
        ("threshold", float("nan")),
        ("temperature", 0.0),
        ("temperature", -1.0),
        ("data_fingerprint", None),
        ("metrics", []),
        ("training", "none"),
        ("created_at", "yesterday"),
        ("format_version", 2),
    ],
)
def test_from_dict_names_the_bad_field(field: str, value: Any) -> None:
    data = meta().to_dict() | {field: value}
    with pytest.raises(ValueError, match=field):
        ModelMeta.from_dict(data)


@pytest.mark.parametrize("missing", ["version", "arch", "input_size"])
def test_from_dict_names_a_missing_field(missing: str) -> None:
    data = meta().to_dict()
    del data[missing]
    with pytest.raises(ValueError, match=missing):
        ModelMeta.from_dict(data)


def test_from_dict_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        ModelMeta.from_dict(["version", "arch"])


def test_unknown_fields_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="detector.bundle"):
        restored = ModelMeta.from_dict(meta().to_dict() | {"future_field": 1})
    assert restored == meta(created_at=restored.created_at)
    assert "future_field" in caplog.text


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="threshold"):
        meta(threshold=2.0)


def test_new_version_is_sortable_and_unique() -> None:
    versions = {new_version("resnet_hp") for _ in range(20)}
    assert len(versions) == 20
    for version in versions:
        assert re.fullmatch(r"resnet_hp-\d{8}-\d{6}-[0-9a-f]{4}", version), version


def test_bundled_model_dir_is_inside_the_package() -> None:
    assert bundled_model_dir().parts[-2:] == ("detector", "bundled")


# --- saving -------------------------------------------------------------------------------


def test_tiny_bundle_is_complete(tiny_bundle: Path) -> None:
    names = {p.name for p in tiny_bundle.iterdir()}
    assert names == {KERAS_FILE, META_FILE, TFLITE_FILE}
    loaded = read_meta(tiny_bundle)
    assert (loaded.arch, loaded.input_size) == ("tiny", 32)
    assert loaded.version == tiny_bundle.name
    # No temp siblings left behind by the atomic save.
    assert [p.name for p in tiny_bundle.parent.iterdir()] == [tiny_bundle.name]


def test_save_never_leaves_a_half_written_bundle(tmp_path: Path) -> None:
    dest = tmp_path / "models" / "broken"
    with pytest.raises(OSError, match="No space"):
        save_bundle(FakeModel(fail_save=True), meta(), dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "existing"
    dest.mkdir()
    (dest / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        save_bundle(FakeModel(), meta(), dest)
    assert (dest / "keep.txt").read_text() == "precious"


def test_failed_litert_export_still_ships_the_bundle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "bundle"
    with caplog.at_level(logging.WARNING, logger="detector.bundle"):
        save_bundle(FakeModel(), meta(), dest)
    assert {p.name for p in dest.iterdir()} == {KERAS_FILE, META_FILE}
    assert "LiteRT export failed" in caplog.text
    assert read_meta(dest) == meta(created_at=read_meta(dest).created_at)


def test_export_can_be_skipped(tmp_path: Path) -> None:
    dest = save_bundle(FakeModel(), meta(), tmp_path / "plain", export_litert=False)
    assert {p.name for p in dest.iterdir()} == {KERAS_FILE, META_FILE}


def test_read_meta_reports_bad_json(tmp_path: Path, tiny_bundle: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "copy"))
    (copy / META_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_meta(copy)


# --- the model contract -------------------------------------------------------------------


def test_contract_check_accepts_a_proper_model() -> None:
    import keras

    inputs = modelio.model_input()
    x = modelio.build_preprocessing(inputs, 24)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, modelio.logit_head(x))
    modelio.check_model_contract(model, 24)
    assert model.outputs[0].dtype == "float32"
    with pytest.raises(ValueError, match="Resizing"):
        modelio.check_model_contract(model, 32)


def test_contract_check_rejects_missing_preprocessing() -> None:
    import keras

    inputs = modelio.model_input()
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, modelio.logit_head(x))
    with pytest.raises(ValueError, match="Resizing"):
        modelio.check_model_contract(model, 24)
