"""Leave one source out: the measure to choose a model by (DETECTION.md).

Each source with training pictures is held out in turn (real ones too): the head and the picture
rule are fitted without it, then its pictures (all three splits) are ranked against the test
pictures of the other class (ROC AUC, no threshold involved), and their accuracy at the threshold
chosen without them is recorded. Features come from the cache, so a source costs a head fit
(seconds). Test-only sources are never held out nor ranked against: nothing is chosen on them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from training import calibration, evaluate
from training.pretrained import combine
from training.pretrained.data import SplitData
from training.pretrained.head import Head
from training.settings import FitSettings

logger = logging.getLogger(__name__)

# One fold: given the source held out, every split's data as that fold sees it (features of
# its own backbone when the backbone is fine-tuned per fold) and the head fitted without it.
Fold = Callable[[str], tuple[dict[str, SplitData], Head]]


def frozen_folds(data: dict[str, SplitData], fit: Callable[[SplitData], Head]) -> Fold:
    """Folds of a frozen backbone: the same rows for every fold, only the head refitted."""
    return lambda source: (data, fit(data["train"].without([source])))


def table(data: dict[str, SplitData], settings: FitSettings, fold: Fold) -> dict[str, Any]:
    """The held-out AUC of every trainable source (or of `settings.loso_sources`), with the
    mean and the worst."""
    started = time.perf_counter()
    trainable = sorted(set(data["train"].sources))
    unknown = sorted(set(settings.loso_sources) - set(trainable))
    if unknown:
        raise ValueError(f"no training pictures of {', '.join(unknown)}: cannot hold out")
    rows: dict[str, Any] = {}
    for source in settings.loso_sources or trainable:
        row = held_out(source, data, settings, fold, trainable)
        if row is not None:
            rows[source] = row
            logger.info("left out %s: AUC %.4f against the other class", source, row["auc"])
    aucs = {s: r["auc"] for s, r in rows.items()}
    worst = min(aucs, key=lambda s: aucs[s]) if aucs else None
    return {
        "sources": rows,
        "mean_auc": float(np.mean(list(aucs.values()))) if aucs else None,
        "worst_auc": aucs[worst] if worst else None,
        "worst_source": worst,
        "not_held_out": sorted(set(data["test"].sources) - set(trainable)),
        "seconds": round(time.perf_counter() - started, 1),
    }


def held_out(
    source: str,
    data: dict[str, SplitData],
    settings: FitSettings,
    fold: Fold,
    trainable: list[str],
) -> dict[str, Any] | None:
    """One row of the table (None when holding the source out leaves a split one class)."""
    train, val = data["train"].without([source]), data["validate"].without([source])
    if len(set(train.labels)) < 2 or len(set(val.labels)) < 2:
        return None
    data, head = fold(source)
    val = data["validate"].without([source])
    val_logits = combine.picture_logits(head, val.rows, len(val))
    rule = combine.fit_rule(val_logits, val.labels, settings.seed, settings.face_decides)
    threshold = calibration.choose_threshold(combine.picture_probs(rule, val_logits), val.labels)
    held = [d.pictures(np.array([s == source for s in d.sources], bool)) for d in data.values()]
    label = held[0].labels[0] if len(held[0]) else held[-1].labels[0]
    test = data["test"]
    others = test.pictures(
        np.array([s.label != label and s.source in trainable for s in test.samples], bool)
    )
    parts = [d for d in held if len(d)] + [others]
    logits = [combine.picture_logits(head, d.rows, len(d)) for d in parts]
    probs = np.concatenate([combine.picture_probs(rule, x) for x in logits])
    labels = np.concatenate([d.labels for d in parts])
    mine = np.concatenate([np.full(len(d), d is not others) for d in parts])
    correct = (probs[mine] >= threshold) == (labels[mine] >= 0.5)
    return {
        "class": "ai" if label >= 0.5 else "real",
        "pictures": int(mine.sum()),
        "auc": evaluate.roc_auc(labels, probs),
        "accuracy": float(correct.mean()),
        "views": _view_aucs(logits, labels),
    }


def _view_aucs(logits: list[combine.PictureLogits], labels: np.ndarray) -> dict[str, float]:
    """Each view alone, ranked the same way (pictures without the view left out)."""
    out = {}
    for kind in ("whole", "patch", "face"):
        values = np.concatenate([getattr(x, kind) for x in logits])
        rows = ~np.isnan(values)
        if rows.any() and 0 < labels[rows].sum() < rows.sum():
            out[kind] = evaluate.roc_auc(labels[rows], values[rows])
    return out


def format_table(result: dict[str, Any]) -> str:
    """The table as plain text, worst source first."""
    lines = [f"{'held-out source':<24} {'class':<5} {'pictures':>8} {'AUC':>7} {'accuracy':>9}"]
    for source, row in sorted(result["sources"].items(), key=lambda item: item[1]["auc"]):
        lines.append(
            f"{source:<24} {row['class']:<5} {row['pictures']:>8} {row['auc']:>7.4f}"
            f" {row['accuracy']:>9.3f}"
        )
    if result["mean_auc"] is not None:
        lines.append(
            f"mean AUC {result['mean_auc']:.4f}, worst {result['worst_auc']:.4f}"
            f" ({result['worst_source']})"
        )
    return "\n".join(lines)
