"""The bundled default model on both shared datasets' test splits (slow: 2,653 pictures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.bundle import bundled_model_dir, read_meta

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASET = DATASETS / "faces"
TEST_PICTURES = 2653  # faces 1,099 + faces-extra 1,554
# The product targets from the issue; docs/default-model.md says why they are not met yet.
TARGET_ACCURACY = 0.97
TARGET_AUC = 0.995
TARGET_SOURCE_ACCURACY = 0.92
TARGET_BUNDLE_BYTES = 8_000_000
# The previous default (hp_cnn, faces only) measured on the same two test splits.
PREVIOUS_ACCURACY = 0.713
PREVIOUS_AUC = 0.779

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

    splits = merge([load_layout(DATASETS / name) for name in ("faces", "faces-extra")])
    return evaluate(bundle, splits.test).metrics


def test_bundled_metadata_is_complete() -> None:
    bundle = _bundle()
    meta = read_meta(bundle)
    assert meta.training["command"].startswith("deepfake-detector train")
    assert meta.training["dataset"]["distribution"]["test"]["total"] == TEST_PICTURES
    assert meta.faces and meta.combine and meta.uncertain_band is not None
    assert len(meta.data_fingerprint) == 64
    assert {"validate", "test"} <= set(meta.metrics)
    assert sorted(p.name for p in bundle.iterdir()) == ["model.json", "model.keras", "model.tflite"]


def test_bundled_litert_model_is_the_recorded_choice() -> None:
    # Training compared float32 and int8 LiteRT exports on the test split and kept one.
    bundle = _bundle()
    litert = read_meta(bundle).training["litert"]
    chosen = litert["quantization"]
    assert (bundle / "model.tflite").stat().st_size == litert[chosen]["bytes"]
    if chosen != "float32":
        loss = litert["float32"]["accuracy"] - litert[chosen]["accuracy"]
        assert loss <= litert["max_accuracy_loss"] + 1e-12


def test_bundled_keras_model_is_small_and_agrees_with_litert() -> None:
    # model.keras carries int8 or float16 weights when that kept test accuracy.
    bundle = _bundle()
    assert read_meta(bundle).training["keras_weights"]["weights"] != "float32"
    assert (bundle / "model.keras").stat().st_size < 9_000_000
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
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.005)
    assert metrics["roc_auc"] == pytest.approx(recorded["roc_auc"], abs=0.003)


def test_bundled_model_beats_the_previous_default(metrics: dict[str, Any]) -> None:
    assert metrics["accuracy"] >= PREVIOUS_ACCURACY + 0.1
    assert metrics["roc_auc"] >= PREVIOUS_AUC + 0.1
    assert metrics["ece"] <= 0.05
    for source in ("generated_photos", "sd_pollinations", "sfhq_t2i", "utkface", "web_photos"):
        assert metrics["per_source"][source]["accuracy"] >= 0.95, source


@pytest.mark.xfail(
    strict=True,
    reason="not met yet: dfdc face swaps and ffhq vs stylegan_140k (docs/default-model.md)",
)
def test_bundled_model_meets_the_product_targets(metrics: dict[str, Any]) -> None:
    size = sum(p.stat().st_size for p in _bundle().iterdir())
    assert size <= TARGET_BUNDLE_BYTES, f"bundle is {size:,} bytes"
    assert metrics["accuracy"] >= TARGET_ACCURACY
    assert metrics["roc_auc"] >= TARGET_AUC
    for source, m in metrics["per_source"].items():
        assert m["accuracy"] >= TARGET_SOURCE_ACCURACY, source
