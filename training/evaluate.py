"""Evaluating a model bundle on labelled images: JSON-safe metrics for the CLI, DB and reports."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from detector.classifier import Classifier
from detector.errors import ImageRejected
from detector.imageio import LoadLimits
from detector.views import Views
from training import calibration
from training.datasets import CLASS_NAMES, Sample

logger = logging.getLogger(__name__)

# Points kept per curve: enough to draw it, small enough for a JSON column.
CURVE_POINTS = 101


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Metrics of one model on some samples, plus the raw scores for curves."""

    version: str
    metrics: dict[str, Any]
    scores: np.ndarray  # calibrated P(ai), (N,)
    labels: np.ndarray  # 0/1, (N,)
    sources: tuple[str, ...]
    samples: tuple[Sample, ...]  # the evaluated samples, aligned with scores (rejects dropped)

    def to_json(self) -> str:
        """The metrics as a JSON document."""
        return json.dumps({"version": self.version, **self.metrics}, indent=2, sort_keys=True)


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC, or NaN-free 0.5 when only one class is present."""
    y = np.asarray(labels) >= 0.5
    if y.all() or not y.any():
        return 0.5
    return float(skm.roc_auc_score(y, probs))


def compute_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    sources: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """Every metric of one split as a JSON-safe dict (the shape stored in DB and model.json)."""
    y = (np.asarray(labels) >= 0.5).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    pred = (p >= threshold).astype(np.int64)
    both = 0 < y.sum() < len(y)
    rates = calibration.rates_at(p, y, threshold)
    return {
        "n": len(y),
        "threshold": float(threshold),
        "loss": calibration.log_loss(p, y) if len(y) else 0.0,
        "accuracy": rates["accuracy"],
        "balanced_accuracy": rates["balanced_accuracy"],
        "tpr": rates["tpr"],
        "tnr": rates["tnr"],
        "roc_auc": roc_auc(y, p),
        "average_precision": float(skm.average_precision_score(y, p)) if both else 0.0,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else 0.0,
        "ece": calibration.expected_calibration_error(p, y),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "classification_report": skm.classification_report(
            y,
            pred,
            labels=[0, 1],
            target_names=list(CLASS_NAMES),
            output_dict=True,
            zero_division=0,
        ),
        "per_source": per_source_metrics(y, p, sources, threshold),
        "threshold_sweep": calibration.threshold_sweep(p, y),
        "curves": curves(y, p),
    }


def per_source_metrics(
    labels: np.ndarray, probs: np.ndarray, sources: Sequence[str], threshold: float
) -> dict[str, dict[str, Any]]:
    """Accuracy, support and mean score per source (a source is usually one class only).

    `auc_vs_other_class` ranks a one-class source against every image of the other class: it
    tells "the threshold is off for this source" (high AUC, low accuracy) from "the model
    cannot tell this source apart" (AUC near 0.5), which matters most for unseen generators.
    """
    src = np.asarray(sources, dtype=object)
    result: dict[str, dict[str, Any]] = {}
    for name in sorted(set(sources)):
        mask = src == name
        y, p = labels[mask], probs[mask]
        correct = (p >= threshold) == (y == 1)
        result[str(name)] = {
            "support": int(mask.sum()),
            "real": int((y == 0).sum()),
            "ai": int((y == 1).sum()),
            "accuracy": float(correct.mean()),
            "errors": int((~correct).sum()),
            "mean_score": float(p.mean()),
            "roc_auc": roc_auc(y, p) if 0 < y.sum() < len(y) else None,
            "auc_vs_other_class": _auc_vs_other_class(labels, probs, mask),
        }
    return result


def _auc_vs_other_class(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> float | None:
    classes = np.unique(labels[mask])
    if len(classes) != 1:
        return None
    pool = mask | (labels != classes[0])
    if pool.sum() == mask.sum():  # no image of the other class to rank against
        return None
    return roc_auc(labels[pool], probs[pool])


def curves(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Down-sampled ROC and precision-recall curves plus a reliability diagram."""
    if not 0 < labels.sum() < len(labels):
        return {}
    fpr, tpr, _ = skm.roc_curve(labels, probs)
    precision, recall, _ = skm.precision_recall_curve(labels, probs)
    return {
        "roc": {"fpr": _thin(fpr), "tpr": _thin(tpr)},
        "pr": {"precision": _thin(precision), "recall": _thin(recall)},
        "reliability": reliability(labels, probs),
    }


def _thin(values: np.ndarray) -> list[float]:
    if len(values) > CURVE_POINTS:
        idx = np.unique(np.linspace(0, len(values) - 1, CURVE_POINTS).round().astype(int))
        values = values[idx]
    return [round(float(v), 5) for v in values]


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict[str, list[Any]]:
    """Mean predicted P(ai) vs observed fraction of ai per probability bin."""
    which = np.clip((probs * bins).astype(int), 0, bins - 1)
    out: dict[str, list[Any]] = {"bin_center": [], "mean_score": [], "fraction_ai": [], "count": []}
    for b in range(bins):
        mask = which == b
        out["bin_center"].append((b + 0.5) / bins)
        out["count"].append(int(mask.sum()))
        out["mean_score"].append(float(probs[mask].mean()) if mask.any() else None)
        out["fraction_ai"].append(float(labels[mask].mean()) if mask.any() else None)
    return out


def evaluate(
    target: Classifier | Path,
    samples: Sequence[Sample],
    *,
    batch_size: int = 64,
    cache_dir: Path | None = None,
    threshold: float | None = None,
) -> EvalReport:
    """Score samples with a classifier (or a bundle folder) and compute every metric."""
    from training import pipeline  # TensorFlow-heavy import, only when evaluating

    classifier = target if isinstance(target, Classifier) else Classifier.load(Path(target))
    cut = classifier.threshold if threshold is None else threshold
    if classifier.finder is not None:
        probs, picked = score_pictures(classifier, samples, batch_size)
        kept = tuple(picked)
        labels = np.array([s.label for s in kept], dtype=np.float32)
        sources = tuple(s.source for s in kept)
    else:
        data = pipeline.decode_samples(samples, classifier.input_size, cache_dir=cache_dir)
        parts = [
            classifier.predict(np.asarray(data.pixels[i : i + batch_size]))
            for i in range(0, len(data), batch_size)
        ]
        probs = np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float64)
        labels, sources, kept = data.labels, data.sources, data.samples
    metrics = compute_metrics(labels, probs, sources, cut)
    metrics["backend"] = classifier.backend
    return EvalReport(classifier.version, metrics, probs, labels, sources, kept)


def score_pictures(
    classifier: Classifier, samples: Sequence[Sample], batch_size: int
) -> tuple[np.ndarray, list[Sample]]:
    """Combined scores as serving computes them (whole view and every face), per sample.

    Not cached: every face the finder accepts is scored, exactly as in the daemon.
    """
    from detector.views import decode_views

    finder = classifier.finder
    limits = LoadLimits()

    def views(sample: Sample) -> Views | None:
        try:
            return decode_views(sample.path.read_bytes(), classifier.input_size, limits, finder)
        except (ImageRejected, OSError) as exc:
            logger.warning("skipping %s: %s", sample.path, exc)
            return None

    probs: list[float] = []
    kept: list[Sample] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            decoded = list(pool.map(views, chunk))
            pictures = [v for v in decoded if v is not None]
            kept.extend(s for s, v in zip(chunk, decoded, strict=True) if v is not None)
            probs.extend(p.score for p in classifier.score_pictures(pictures))
    return np.array(probs, dtype=np.float64), kept


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text summary: headline numbers, confusion matrix and per-source accuracy."""
    lines = [
        f"images {metrics['n']}  threshold {metrics['threshold']:.3f}",
        f"accuracy {metrics['accuracy']:.4f}  balanced {metrics['balanced_accuracy']:.4f}  "
        f"ROC AUC {metrics['roc_auc']:.4f}  AP {metrics['average_precision']:.4f}",
        f"loss {metrics['loss']:.4f}  ECE {metrics['ece']:.4f}  "
        f"fakes caught (TPR) {metrics['tpr']:.4f}  reals passed (TNR) {metrics['tnr']:.4f}",
        "confusion matrix (rows true real/ai, cols predicted real/ai): "
        f"{metrics['confusion_matrix']}",
        "per source:",
    ]
    for name, m in metrics["per_source"].items():
        lines.append(
            f"  {name:<20} n={m['support']:5d}  accuracy {m['accuracy']:.4f}  "
            f"errors {m['errors']:4d}  mean P(ai) {m['mean_score']:.3f}"
            + _auc_text(m.get("auc_vs_other_class"))
        )
    return "\n".join(lines)


def _auc_text(value: float | None) -> str:
    return f"  AUC vs other class {value:.3f}" if value is not None else ""
