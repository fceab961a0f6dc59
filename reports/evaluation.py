"""Evaluation report of one model on a held-out test split.

The metric numbers come from `training.evaluate` (one implementation, computed by the caller and
passed in as its metrics dict); this module only draws them. Curves are plotted from the
per-image scores, which the caller passes along with the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from detector.bundle import ModelMeta
from reports import charts, generalization
from reports.imagefacts import thumbnail_uri
from reports.page import (
    Block,
    Cell,
    Chart,
    Gallery,
    Note,
    Page,
    Preformatted,
    Section,
    Stamp,
    Table,
    Thumb,
    nodata_section,
)
from reports.recorded import RecordedEvaluation
from reports.stats import reliability

logger = logging.getLogger(__name__)

CLASS_NAMES: Final[tuple[str, str]] = ("real", "ai")
MISTAKES_SHOWN: Final[int] = 12
REPORT_ORDER: Final[tuple[str, ...]] = ("real", "ai", "accuracy", "macro avg", "weighted avg")
SWEEP_ORDER: Final[tuple[str, ...]] = (
    "threshold",
    "accuracy",
    "balanced_accuracy",
    "tpr",
    "tnr",
    "fpr",
    "precision",
)
RECORD_LACKS: Final[str] = (
    "the model.json of this model does not record it (an older training run); "
    "set [reports] data to compute it live."
)
HEADLINE: Final[tuple[str, ...]] = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "average_precision",
    "f1",
    "precision",
    "recall",
    "loss",
    "ece",
    "brier",
    "threshold",
    "support",
)


@dataclass(frozen=True, slots=True)
class ScoredImage:
    """One test image with the model's P(ai)."""

    path: Path
    label: int
    source: str
    score: float


@dataclass(frozen=True, slots=True)
class PreviousModel:
    """The model this one is compared with and its stored metrics on the same data."""

    version: str
    metrics: Mapping[str, Any]
    relation: str = "previous champion"


@dataclass(frozen=True, slots=True)
class EvaluationInput:
    """Everything the evaluation page shows (plain data; the caller evaluated)."""

    meta: ModelMeta | None
    model_source: str  # champion | bundled | config | candidate
    dataset: str
    data_fingerprint: str
    metrics: Mapping[str, Any] | None
    scored: Sequence[ScoredImage] = ()
    previous: PreviousModel | None = None
    decision: Mapping[str, Any] | None = None
    problem: str = ""  # why there are no metrics, when there are none
    root: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Set when the figures are the ones model.json recorded at training (no live data).
    recorded: RecordedEvaluation | None = None


def build_evaluation_page(inp: EvaluationInput, *, stamp: Stamp, name: str = "evaluation") -> Page:
    """The evaluation page; sections without data say why instead of failing."""
    version = inp.meta.version if inp.meta else "unknown"
    title = f"Model evaluation: {version}"
    sections: list[Section] = [_model_card(inp)]
    if inp.recorded is not None:
        sections.append(_recorded(inp.recorded))
    if inp.decision is not None:
        sections.append(_decision(inp.decision))
    if inp.metrics is None:
        reason = inp.problem or "no evaluation data is configured ([reports] data)."
        sections.append(nodata_section("metrics", "Metrics", reason))
    else:
        m = inp.metrics
        labels = np.array([s.label for s in inp.scored], dtype=int)
        scores = np.array([s.score for s in inp.scored], dtype=float)
        threshold = _threshold(inp)
        absent = RECORD_LACKS if inp.recorded is not None else ""
        sections += [
            _metrics(m),
            _classification_report(m, absent),
            _confusion(m, labels, scores, threshold, absent),
            _curves(m, labels, scores, absent),
            _calibration(m, labels, scores, absent),
            _sweep(m, absent),
            _per_source(m, _unseen_sources(inp.meta), absent),
            *generalization.sections(m, inp.meta.training if inp.meta else {}),
            _mistakes(inp, threshold),
        ]
    sections.append(_training_curves(inp.meta))
    sections.append(_comparison(inp))
    summary = f"Test data: {inp.dataset or 'none'} ({len(inp.scored)} images)."
    if inp.recorded is not None:
        n = _number(inp.recorded.metrics.get("n") or inp.recorded.metrics.get("support"))
        count = f"{int(n)} images" if n is not None else "image count not recorded"
        summary = f"Recorded at training: {inp.recorded.split} split of {inp.dataset} ({count})."
    return Page(name, title, stamp, tuple(sections), summary=summary)


def _recorded(rec: RecordedEvaluation) -> Section:
    """Says plainly where the figures come from, and which recorded pieces are missing."""
    blocks: list[Block] = [Note(rec.sentence(), "warn")]
    missing = rec.missing()
    if missing:
        blocks.append(Note(f"This model.json does not record: {', '.join(missing)}.", "warn"))
    blocks.append(
        Note(
            "Set [reports] data in config.toml to a labelled folder to evaluate the model live; "
            "live data then replaces these figures and adds the most confident mistakes."
        )
    )
    return Section("recorded", "Figures recorded at training", tuple(blocks))


def _threshold(inp: EvaluationInput) -> float:
    value = (inp.metrics or {}).get("threshold")
    if isinstance(value, int | float):
        return float(value)
    return float(inp.meta.threshold) if inp.meta else 0.5


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _model_card(inp: EvaluationInput) -> Section:
    meta = inp.meta
    rows: list[tuple[Cell, ...]] = [("serving as", inp.model_source)]
    if meta is not None:
        rows += [
            ("version", meta.version),
            ("architecture", meta.arch),
            ("input size", f"{meta.input_size} px"),
            ("decision threshold", meta.threshold),
            ("temperature", meta.temperature),
            ("trained on (fingerprint)", meta.data_fingerprint or "—"),
            ("created", meta.created_at),
        ]
    fp_name = "data fingerprint (all splits)" if inp.recorded else "test data fingerprint"
    rows += [("test data", inp.dataset or "—"), (fp_name, inp.data_fingerprint)]
    blocks: list[Block] = [Table(("", "value"), tuple(rows))]
    blocks += [Note(n) for n in inp.notes]
    if meta is None:
        blocks.insert(0, Note("The model's metadata could not be read.", "warn"))
    return Section("model", "Model", tuple(blocks))


def _decision(decision: Mapping[str, Any]) -> Section:
    promote = bool(decision.get("promote"))
    reasons = tuple((str(r),) for r in decision.get("reasons") or ())
    verdict = "Promoted to champion." if promote else "Not promoted: the champion stays."
    blocks = (Note(verdict, "good" if promote else "warn"), Table(("reason",), reasons))
    return Section("decision", "Promotion decision", blocks)


def _metrics(m: Mapping[str, Any]) -> Section:
    rows = tuple((k, v) for k in HEADLINE if (v := _number(m.get(k))) is not None)
    if not rows:
        return nodata_section("metrics", "Metrics", "the evaluation stored no overall metrics.")
    return Section("metrics", "Metrics", (Table(("metric", "value"), rows, "Overall"),))


def _classification_report(m: Mapping[str, Any], absent: str = "") -> Section:
    title = "Classification report"
    report = m.get("classification_report")
    if isinstance(report, str) and report.strip():
        return Section("classification-report", title, (Preformatted(report),))
    if isinstance(report, Mapping) and report:
        rows: list[tuple[Cell, ...]] = []
        # Stored JSON comes back with its keys sorted (accuracy, ai, macro avg, real ...): the
        # classes first, then the averages, as scikit-learn prints them.
        for name, vals in sorted(report.items(), key=lambda item: _rank(REPORT_ORDER, item[0])):
            if isinstance(vals, Mapping):
                keys = ("precision", "recall", "f1-score", "support")
                rows.append((str(name), *(_number(vals.get(k)) for k in keys)))
            else:
                rows.append((str(name), None, None, _number(vals), None))
        cols = ("class", "precision", "recall", "f1-score", "support")
        return Section("classification-report", title, (Table(cols, tuple(rows)),))
    return nodata_section("classification-report", title, absent or "the evaluation has no report.")


def _confusion(
    m: Mapping[str, Any],
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    absent: str = "",
) -> Section:
    title = "Confusion matrix"
    matrix = m.get("confusion_matrix")
    if not _is_matrix(matrix) and labels.size:
        pred = (scores >= threshold).astype(int)
        matrix = [[int(np.sum((labels == t) & (pred == p))) for p in (0, 1)] for t in (0, 1)]
    if not _is_matrix(matrix):
        reason = absent or "no confusion matrix was computed."
        return nodata_section("confusion-matrix", title, reason)
    assert isinstance(matrix, list)
    chart = charts.heatmap(
        matrix, rows=CLASS_NAMES, cols=CLASS_NAMES, title=title, xlabel="predicted", ylabel="true"
    )
    rows = tuple((f"true {CLASS_NAMES[i]}", *matrix[i]) for i in range(2))
    table = Table(("", "predicted real", "predicted ai"), rows, f"At threshold {threshold:.3f}")
    return Section("confusion-matrix", title, (Chart(title, chart), table))


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(r, list) and len(r) == 2 for r in value)
    )


def _curves(
    m: Mapping[str, Any], labels: np.ndarray, scores: np.ndarray, absent: str = ""
) -> Section:
    title = "ROC and precision-recall curves"
    points = _curve_points(m, labels, scores)
    if points is None:
        reason = absent or "curves need scored test images of both classes."
        return nodata_section("curves", title, reason)
    (fpr, tpr), (recall, precision) = points
    roc = charts.lines(
        {"ROC": (fpr, tpr)},
        title="ROC curve",
        xlabel="false positive rate (real called ai)",
        ylabel="true positive rate",
        diagonal=True,
    )
    pr = charts.lines(
        {"precision-recall": (recall, precision)},
        title="Precision-recall curve (ai = positive)",
        xlabel="recall",
        ylabel="precision",
        step=True,
    )
    return Section("curves", title, (Chart("ROC curve", roc), Chart("Precision-recall", pr)))


Curve = tuple[list[float], list[float]]


def _curve_points(
    m: Mapping[str, Any], labels: np.ndarray, scores: np.ndarray
) -> tuple[Curve, Curve] | None:
    """(fpr, tpr), (recall, precision): training's stored curves, else from the scores."""
    stored = m.get("curves")
    if isinstance(stored, Mapping) and stored.get("roc") and stored.get("pr"):
        roc, pr = stored["roc"], stored["pr"]
        return (list(roc["fpr"]), list(roc["tpr"])), (list(pr["recall"]), list(pr["precision"]))
    if labels.size == 0 or len(set(labels.tolist())) < 2:
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return (fpr.tolist(), tpr.tolist()), (recall.tolist(), precision.tolist())


def _calibration(
    m: Mapping[str, Any], labels: np.ndarray, scores: np.ndarray, absent: str = ""
) -> Section:
    title = "Calibration (reliability diagram)"
    stored = (m.get("curves") or {}).get("reliability")
    if isinstance(stored, Mapping) and stored.get("mean_score"):
        bins = zip(stored["mean_score"], stored["fraction_ai"], stored["count"], strict=True)
        kept = [(c, a, n) for c, a, n in bins if c is not None and a is not None and n]
        conf, acc, counts = ([k[i] for k in kept] for i in range(3))
        ece_here = float("nan")
    elif labels.size:
        conf, acc, counts, ece_here = reliability(labels.tolist(), scores.tolist())
    else:
        return nodata_section("calibration", title, absent or "no scored test images.")
    ece = _number(m.get("ece"))
    chart = charts.lines(
        {"model": (conf, acc)},
        title="Reliability diagram",
        xlabel="mean predicted P(ai) in bin",
        ylabel="fraction ai",
        diagonal=True,
    )
    rows = tuple(zip(conf, acc, counts, strict=True))
    shown = ece if ece is not None else ece_here
    note = Note(
        f"Expected calibration error (ECE): {shown:.4f}. A calibrated model follows the diagonal."
    )
    table = Table(("mean P(ai)", "fraction ai", "images"), rows, "Bins of width 0.1")
    return Section("calibration", title, (note, Chart("Reliability diagram", chart), table))


def _sweep(m: Mapping[str, Any], absent: str = "") -> Section:
    title = "Threshold sweep"
    sweep = m.get("threshold_sweep") or m.get("sweep")
    if not isinstance(sweep, list) or not sweep or not isinstance(sweep[0], Mapping):
        reason = absent or "the evaluation has no threshold sweep."
        return nodata_section("threshold-sweep", title, reason)
    cols = tuple(sorted((str(k) for k in sweep[0]), key=lambda k: _rank(SWEEP_ORDER, k)))
    ordered = sorted(sweep, key=lambda row: _number(row.get("threshold")) or 0.0)
    rows = tuple(tuple(_cell(row.get(c)) for c in cols) for row in ordered)
    return Section("threshold-sweep", title, (Table(cols, rows),))


def _rank(order: Sequence[str], key: str) -> tuple[int, str]:
    """Position of `key` in `order` (unknown keys after, alphabetically)."""
    return (order.index(key) if key in order else len(order), key)


def _cell(value: Any) -> Cell:
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _unseen_sources(meta: ModelMeta | None) -> tuple[str, ...]:
    """Sources the model never saw in training (`train --hold-out-source`)."""
    dataset = (meta.training if meta else {}).get("dataset")
    unseen = dataset.get("unseen_sources") if isinstance(dataset, Mapping) else None
    return tuple(str(s) for s in unseen) if isinstance(unseen, list) else ()


def _per_source(m: Mapping[str, Any], unseen: Sequence[str] = (), absent: str = "") -> Section:
    title = "Metrics per source / generator"
    per = m.get("per_source")
    if not isinstance(per, Mapping) or not per:
        return nodata_section("per-source", title, absent or "the test data names no sources.")
    notes: list[Block] = []
    if unseen:
        notes.append(
            Note(
                f"Never seen in training (held out of train and validate): {', '.join(unseen)}. "
                "Their accuracy shows how the model does on a source it was not fitted to.",
                "warn",
            )
        )
    keys: list[str] = []
    for vals in per.values():
        for k in vals if isinstance(vals, Mapping) else ():
            if k not in keys and _number(vals[k]) is not None:
                keys.append(str(k))
    rows = tuple(
        (str(src), *(_number(vals.get(k)) if isinstance(vals, Mapping) else None for k in keys))
        for src, vals in sorted(per.items())
    )
    acc = {str(src): _number(v.get("accuracy")) for src, v in per.items() if isinstance(v, Mapping)}
    blocks: list[Block] = [*notes, Table(("source", *keys), rows)]
    if any(v is not None for v in acc.values()):
        chart = charts.bar_groups(
            list(acc), {"accuracy": [v or 0.0 for v in acc.values()]}, title=title, ylabel="acc"
        )
        blocks.append(Chart("Accuracy per source", chart))
    return Section("per-source", title, tuple(blocks))


def _mistakes(inp: EvaluationInput, threshold: float) -> Section:
    title = "Most confident mistakes"
    wrong = [s for s in inp.scored if (s.score >= threshold) != (s.label == 1)]
    if not inp.scored and inp.recorded is not None:
        reason = (
            "model.json records no per-image results; set [reports] data to see the most "
            "confident mistakes."
        )
        return nodata_section("mistakes", title, reason)
    if not inp.scored:
        return nodata_section("mistakes", title, "no scored test images.")
    if not wrong:
        return Section("mistakes", title, (Note("No mistakes on the test data.", "good"),))
    wrong.sort(key=lambda s: -abs(s.score - threshold))
    thumbs = []
    for s in wrong[:MISTAKES_SHOWN]:
        uri = thumbnail_uri(s.path)
        name = _display(s.path, inp.root)
        caption = f"{name} · true {CLASS_NAMES[s.label]} · P(ai) {s.score:.3f} · {s.source}"
        if uri:
            thumbs.append(Thumb(uri, caption, name))
    note = Note(
        f"{len(wrong)} of {len(inp.scored)} test images misclassified; the most "
        f"confident {min(len(wrong), MISTAKES_SHOWN)} are shown."
    )
    return Section("mistakes", title, (note, Gallery(tuple(thumbs))))


def _display(path: Path, root: Path | None) -> str:
    if root is not None and path.is_relative_to(root):
        return str(path.relative_to(root))
    return path.name


def _training_curves(meta: ModelMeta | None) -> Section:
    title = "Training curves"
    history = (meta.training if meta else {}).get("history")
    if not isinstance(history, Mapping) or not history:
        return nodata_section("training-curves", title, "the model stores no training history.")
    blocks: list[Block] = []
    for metric in ("loss", "accuracy"):
        series = {
            name: (list(range(1, len(vals) + 1)), [float(v) for v in vals])
            for name in (metric, f"val_{metric}")
            if isinstance(vals := history.get(name), list) and vals
        }
        if series:
            chart = charts.lines(series, title=metric, xlabel="epoch", ylabel=metric)
            blocks.append(Chart(f"{metric} per epoch (train and validation)", chart))
    if not blocks:
        return nodata_section("training-curves", title, "the history has no loss or accuracy.")
    return Section("training-curves", title, tuple(blocks))


def _comparison(inp: EvaluationInput) -> Section:
    title = "Comparison with the previous model"
    prev = inp.previous
    if prev is None:
        return nodata_section("comparison", title, "no previous model.")
    if inp.metrics is None:
        return nodata_section("comparison", title, "this model has no metrics to compare.")
    if not prev.metrics:
        reason = f"the {prev.relation} {prev.version} has no stored evaluation on this test data."
        return nodata_section("comparison", title, reason)
    rows = []
    for k in HEADLINE:
        ours, theirs = _number(inp.metrics.get(k)), _number(prev.metrics.get(k))
        if ours is not None or theirs is not None:
            delta = ours - theirs if ours is not None and theirs is not None else None
            rows.append((k, theirs, ours, delta))
    per_prev = prev.metrics.get("per_source") or {}
    per_ours = inp.metrics.get("per_source") or {}
    for src in sorted(set(per_prev) | set(per_ours)):
        ours = _number((per_ours.get(src) or {}).get("accuracy"))
        theirs = _number((per_prev.get(src) or {}).get("accuracy"))
        delta = ours - theirs if ours is not None and theirs is not None else None
        rows.append((f"accuracy · {src}", theirs, ours, delta))
    cols = ("metric", f"{prev.relation} {prev.version}", "this model", "change")
    blocks: list[Block] = [Table(cols, tuple(rows))]
    same = prev.metrics.get("data_fingerprint") in (None, "", inp.data_fingerprint)
    if not same:
        blocks.insert(0, Note("The previous model was evaluated on different data.", "warn"))
    return Section("comparison", title, tuple(blocks))
