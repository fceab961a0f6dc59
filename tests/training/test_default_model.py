"""The bundled default model meets its targets on the shared dataset's test split (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.bundle import bundled_model_dir, read_meta

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "faces"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> object:
    if not (DATASET / "test").is_dir():
        pytest.skip(f"dataset not found at {DATASET}")
    if not (bundled_model_dir() / "model.keras").is_file():
        pytest.skip("no bundled default model")
    from training.datasets import load_layout
    from training.evaluate import evaluate

    return evaluate(bundled_model_dir(), load_layout(DATASET).test)


def test_bundled_metadata_is_complete() -> None:
    if not (bundled_model_dir() / "model.json").is_file():
        pytest.skip("no bundled default model")
    meta = read_meta(bundled_model_dir())
    assert meta.training["command"].startswith("deepfake-detector train")
    assert len(meta.data_fingerprint) == 64
    assert meta.metrics["test"]["n"] == 1099
    size = sum(p.stat().st_size for p in bundled_model_dir().iterdir())
    assert size < 8_000_000


def test_bundled_model_meets_the_targets(report: object) -> None:
    metrics = report.metrics  # type: ignore[attr-defined]
    assert metrics["accuracy"] >= 0.97
    assert metrics["roc_auc"] >= 0.995
    for source, m in metrics["per_source"].items():
        assert m["accuracy"] >= 0.93, source
