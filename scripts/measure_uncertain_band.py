"""How many of a model's mistakes its uncertain band catches, measured on test splits.

The band is chosen on the validation split(s) with training.calibration.uncertain_band, exactly
as training does, then applied to each test split:

    .venv/bin/python scripts/measure_uncertain_band.py detector/bundled \
        ../shared/datasets/faces ../shared/datasets/faces-extra --precision 0.95
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from detector.classifier import Classifier
from training.calibration import UNCERTAIN_PRECISION, uncertain_band
from training.datasets import load_layout
from training.evaluate import evaluate


def _scores(classifier: Classifier, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    report = evaluate(classifier, load_layout(root).split(split))
    return np.asarray(report.scores, dtype=np.float64), np.asarray(report.labels) >= 0.5


def _measure(scores: np.ndarray, ai: np.ndarray, threshold: float, lo: float, hi: float) -> dict:
    wrong = (scores >= threshold) != ai
    inside = (scores >= lo) & (scores < hi)
    real_calls, ai_calls = scores < lo, scores >= hi
    return {
        "images": int(scores.size),
        "mistakes": int(wrong.sum()),
        "mistakes_in_band": int((wrong & inside).sum()),
        "share_of_mistakes_in_band": float((wrong & inside).sum() / max(wrong.sum(), 1)),
        "images_in_band": int(inside.sum()),
        "share_of_images_in_band": float(inside.mean()) if scores.size else 0.0,
        "precision_real_outside_band": float((~ai[real_calls]).mean())
        if real_calls.any()
        else None,
        "precision_ai_outside_band": float(ai[ai_calls].mean()) if ai_calls.any() else None,
        "accuracy_outside_band": float((~wrong[~inside]).mean()) if (~inside).any() else None,
    }


def main() -> None:
    """Print the band and, per test split, the mistakes it holds, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument(
        "--also-test", type=Path, nargs="*", default=[], help="test splits not used for the band"
    )
    parser.add_argument("--precision", type=float, nargs="+", default=[UNCERTAIN_PRECISION])
    args = parser.parse_args()
    classifier = Classifier.load(args.bundle)
    val = [_scores(classifier, root, "validate") for root in args.data]
    val_scores = np.concatenate([s for s, _ in val])
    val_labels = np.concatenate([y for _, y in val])
    threshold = classifier.threshold
    tests = {root.name: _scores(classifier, root, "test") for root in [*args.data, *args.also_test]}
    results = []
    for precision in args.precision:
        lo, hi = uncertain_band(val_scores, val_labels, threshold, precision=precision)
        out: dict = {"model": classifier.version, "threshold": threshold, "precision": precision}
        out["band_from"] = [root.name for root in args.data]
        out["band"] = [lo, hi]
        out["validate"] = _measure(val_scores, val_labels, threshold, lo, hi)
        for name, (scores, ai) in tests.items():
            out[f"test:{name}"] = _measure(scores, ai, threshold, lo, hi)
        results.append(out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
