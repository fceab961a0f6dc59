"""A short real training run: bundle, checkpoints, calibration, metrics and early stopping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector import modelio
from detector.bundle import ModelMeta, read_meta
from detector.classifier import Classifier
from training import architectures
from training import augment as aug
from training.datasets import load_layout
from training.fit import FitSettings, train
from training.publish import publish_bundle

FAST = FitSettings(
    arch="tiny",
    image_size=32,
    epochs=3,
    batch_size=8,
    learning_rate=0.02,
    patience=5,
    seed=5,
    augment=aug.AugmentConfig(jpeg_prob=0.2),
)


def test_short_training_run_writes_a_complete_bundle(
    kaggle_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    splits = load_layout(kaggle_dir)
    result = train(
        splits,
        FAST,
        dest=tmp_path / "store" / "v1",
        run_dir=tmp_path / "run",
        cache_dir=cache_dir,
        command="pytest",
        verbose=0,
    )
    bundle = result.bundle_dir
    assert sorted(p.name for p in bundle.iterdir()) == ["model.json", "model.keras", "model.tflite"]
    meta = read_meta(bundle)
    assert meta.arch == "tiny" and meta.input_size == 32
    assert meta.temperature > 0 and 0.0 <= meta.threshold <= 1.0
    # The uncertain band is chosen on the validation split around the threshold.
    assert meta.uncertain_band is not None and meta.uncertain_precision == 0.97
    assert meta.uncertain_band[0] <= meta.threshold <= meta.uncertain_band[1]
    assert meta.training["calibration"]["uncertain_band"] == list(meta.uncertain_band)
    assert len(meta.data_fingerprint) == 64
    assert meta.training["command"] == "pytest"
    assert meta.training["config"]["epochs"] == 3
    assert meta.training["dataset"]["distribution"]["train"]["real"] == 12
    history = meta.training["history"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history[key]) == 3, key
    # The tiny dataset is easy: the tiny model must learn it within 3 epochs.
    test = meta.metrics["test"]
    assert test["accuracy"] >= 0.9
    assert set(test["per_source"]) == {"cam_a", "cam_b", "gen_a", "gen_b"}
    json.dumps(meta.to_dict())
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["best.keras", "epoch-001.keras", "epoch-002.keras", "epoch-003.keras"]
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 4
    classifier = Classifier.load(bundle, backend="keras")
    modelio.check_model_contract(classifier_model(bundle), 32)
    assert classifier.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1,)
    # The LiteRT model shipped is the one the recorded comparison chose, on the validation
    # split (nothing is chosen on the test split, which may hold test-only sources).
    litert = meta.training["litert"]
    assert litert["split"] == "validate"
    shipped = litert["quantization"]
    assert (bundle / "model.tflite").stat().st_size == litert[shipped]["bytes"]
    assert litert["float32"]["accuracy"] == pytest.approx(
        meta.metrics["validate"]["accuracy"], abs=1e-9
    )
    assert Classifier.load(bundle, backend="litert").backend == "litert"
    assert meta.training["keras_weights"]["weights"] in ("int8", "float32")


def classifier_model(bundle: Path) -> object:
    import keras

    return keras.saving.load_model(bundle / "model.keras", safe_mode=True)


def test_training_is_reproducible(kaggle_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    splits = load_layout(kaggle_dir)
    settings = dataclasses.replace(FAST, epochs=1)
    runs = [
        train(
            splits,
            settings,
            dest=tmp_path / f"b{i}",
            run_dir=tmp_path / f"r{i}",
            cache_dir=cache_dir,
            export_litert=False,
            verbose=0,
        )
        for i in range(2)
    ]
    h0, h1 = (r.history for r in runs)
    assert h0["loss"] == pytest.approx(h1["loss"], rel=1e-4)
    assert h0["val_loss"] == pytest.approx(h1["val_loss"], rel=1e-4)


def test_early_stopping_triggers_when_validation_never_improves(
    kaggle_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    # Learning rate 0 and no BatchNorm (seed_cnn): weights never change, so the validation
    # loss is identical every epoch and patience 2 must stop the run after epoch 3 of 10.
    splits = load_layout(kaggle_dir)
    settings = dataclasses.replace(
        FAST, arch="seed_cnn", epochs=10, patience=2, learning_rate=0.0, augment=aug.NO_AUGMENT
    )
    result = train(
        splits,
        settings,
        dest=tmp_path / "b",
        run_dir=tmp_path / "r",
        cache_dir=cache_dir,
        export_litert=False,
        verbose=0,
    )
    assert result.stopped_early
    assert len(result.history["loss"]) == 3
    assert result.best_epoch == 1


def test_publish_bundle_replaces_only_with_overwrite(tmp_path: Path) -> None:
    def bundle_of(version: str) -> tuple[Any, ModelMeta]:
        return architectures.build("tiny", 32), ModelMeta(version, "tiny", 32)

    dest = tmp_path / "bundled"
    dest.mkdir()  # an empty folder (e.g. a fresh checkout) is simply filled
    publish_bundle(*bundle_of("v1"), dest, export_litert=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        publish_bundle(*bundle_of("v2"), dest, export_litert=False)
    assert read_meta(dest).version == "v1"
    publish_bundle(*bundle_of("v3"), dest, overwrite=True, export_litert=False, private=False)
    assert read_meta(dest).version == "v3"
    assert {oct(p.stat().st_mode & 0o777) for p in dest.iterdir()} == {"0o644"}
    assert oct(dest.stat().st_mode & 0o777) == "0o755"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundled"]  # no staging left over
