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
from training import calibration, fairness
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
    band: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Every metric of one split as a JSON-safe dict (the shape stored in DB and model.json).

    With the model's uncertain `band`: the share of pictures in it, overall and per source.
    """
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
        "per_source": per_source_metrics(y, p, sources, threshold, band),
        "threshold_sweep": calibration.threshold_sweep(p, y),
        "curves": curves(y, p),
        **({"band": calibration.band_report(p, y, band, threshold)} if band else {}),
    }


def per_source_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    sources: Sequence[str],
    threshold: float,
    band: tuple[float, float] | None = None,
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
        if band is not None:
            result[str(name)]["uncertain_share"] = float(((p >= band[0]) & (p < band[1])).mean())
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
    band = classifier.band
    metrics = compute_metrics(labels, probs, sources, cut, (band.lo, band.hi) if band else None)
    groups = fairness.false_positive_rates(kept, probs, cut)
    if groups:
        metrics["fairness"] = groups
    metrics["backend"] = classifier.backend
    return EvalReport(classifier.version, metrics, probs, labels, sources, kept)


def score_pictures(
    classifier: Classifier, samples: Sequence[Sample], batch_size: int
) -> tuple[np.ndarray, list[Sample]]:
    """Combined scores as serving computes them (whole view and every face), per sample.

    Not cached: every face the finder accepts is scored, exactly as in the daemon.
    """
    limits = LoadLimits()

    def views(sample: Sample) -> Views | None:
        try:
            return classifier.spec.decode(sample.path.read_bytes(), limits)
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


def invariance(
    classifier: Classifier, samples: Sequence[Sample], per_source: int, seed: int = 0
) -> dict[str, Any]:
    """Each test picture again through every processing chain (training.degrade): per chain,
    accuracy per class, ROC AUC, and the share of calls (ai or real at the threshold) that flip
    against the unprocessed picture. `per_source` pictures of each source, chosen by seed."""
    from training.degrade import PROCESSING_CHAINS

    picked = pick_per_source(samples, per_source, seed)
    scores, labels = _chain_scores(classifier, picked)
    threshold = classifier.threshold
    base = scores["unprocessed"]
    out: dict[str, Any] = {
        "pictures": len(labels),
        "per_source": per_source,
        "unprocessed": _chain_metrics(base, base, labels, threshold),
        "chains": {},
    }
    for chain in PROCESSING_CHAINS:
        metrics = _chain_metrics(scores[chain.name], base, labels, threshold)
        metrics["accuracy_change"] = metrics["accuracy"] - out["unprocessed"]["accuracy"]
        out["chains"][chain.name] = {**metrics, "chain": chain.to_dict()}
    changes = [m["accuracy_change"] for m in out["chains"].values()]
    out["worst_accuracy_change"] = min(changes) if changes else 0.0
    out["most_flipped"] = max((m["flipped"] for m in out["chains"].values()), default=0.0)
    return out


def pick_per_source(samples: Sequence[Sample], per_source: int, seed: int) -> list[Sample]:
    """Up to `per_source` samples of each source, the same ones for the same seed."""
    import hashlib

    def key(s: Sample) -> str:
        return hashlib.sha256(f"{seed}:{s.path.name}".encode()).hexdigest()

    picked: list[Sample] = []
    for source in sorted({s.source for s in samples}):
        mine = sorted((s for s in samples if s.source == source), key=key)
        picked.extend(mine[:per_source])
    return picked


def _chain_scores(
    classifier: Classifier, samples: Sequence[Sample]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores of every picture unprocessed and through each chain (pictures any variant of
    which cannot be decoded are left out)."""
    from detector.imageio import decode_picture
    from training.degrade import PROCESSING_CHAINS

    limits = LoadLimits()
    names = ["unprocessed", *(c.name for c in PROCESSING_CHAINS)]

    def variants(sample: Sample) -> list[Views] | None:
        try:
            data = sample.path.read_bytes()
            rgb = decode_picture(data, None, limits).rgb
            encoded = [data, *(c.apply(rgb) for c in PROCESSING_CHAINS)]
            return [classifier.spec.decode(d, limits) for d in encoded]
        except (ImageRejected, OSError) as exc:
            logger.warning("skipping %s: %s", sample.path, exc)
            return None

    scores: dict[str, list[float]] = {name: [] for name in names}
    labels: list[float] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for sample, views in zip(samples, pool.map(variants, samples), strict=True):
            if views is None:
                continue
            for name, picture in zip(names, classifier.score_pictures(views), strict=True):
                scores[name].append(picture.score)
            labels.append(float(sample.label))
    return {k: np.array(v) for k, v in scores.items()}, np.array(labels)


def _chain_metrics(
    probs: np.ndarray, base: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, Any]:
    y = labels >= 0.5
    calls, base_calls = probs >= threshold, base >= threshold
    by_class = {
        name: {
            "accuracy": float((calls[rows] == y[rows]).mean()) if rows.any() else 0.0,
            "flipped": float((calls[rows] != base_calls[rows]).mean()) if rows.any() else 0.0,
        }
        for name, rows in (("real", ~y), ("ai", y))
    }
    return {
        "accuracy": float((calls == y).mean()) if len(y) else 0.0,
        "roc_auc": roc_auc(labels, probs),
        "flipped": float((calls != base_calls).mean()) if len(y) else 0.0,
        "by_class": by_class,
    }


def format_invariance(result: dict[str, Any]) -> str:
    """The invariance figures as plain text, one chain a line."""
    base = result["unprocessed"]
    lines = [
        f"processing chains on {result['pictures']} pictures "
        f"(up to {result['per_source']} per source): unprocessed accuracy "
        f"{base['accuracy']:.4f}, AUC {base['roc_auc']:.4f}",
    ]
    for name, m in result["chains"].items():
        real, ai = m["by_class"]["real"]["accuracy"], m["by_class"]["ai"]["accuracy"]
        lines.append(
            f"  {name:<24} accuracy {m['accuracy']:.4f} ({m['accuracy_change']:+.4f})"
            f"  AUC {m['roc_auc']:.4f}  flipped {m['flipped']:.3f}  real {real:.3f}  ai {ai:.3f}"
        )
    return "\n".join(lines)
