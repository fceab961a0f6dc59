"""Evaluations kept in the database: running one on a labelled split and storing it, finding the
stored one for a model and data, per-image scores, and the previous champion to compare with.

Shared by the evaluation report, the scheduler's report job and retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy.orm import Session

from detector.bundle import ModelMeta
from reports.evaluation import PreviousModel, ScoredImage
from storage import queries
from storage.db import Database
from storage.models import ModelVersion, utcnow
from training.datasets import DatasetSplits, Sample, fingerprint
from watcher.settings import Settings

PER_IMAGE: Final[str] = "per_image"  # key of the per-image scores inside stored metrics


def recorded_previous(db: Database, version: str) -> PreviousModel | None:
    """The most recently retired champion with the test figures it recorded at training."""
    with db.session() as s:
        prev = _last_retired_champion(s, version)
        if prev is None:
            return None
        test = (prev.metrics or {}).get("test")
        metrics = dict(test) if isinstance(test, dict) else {}
        return PreviousModel(prev.version, metrics, "previous champion (recorded at training)")


def test_dataset_name(splits: DatasetSplits) -> str:
    """How evaluations on a dataset's test split are named in storage (as `train` does)."""
    return f"{splits.root}:test"


def evaluate_bundle(
    settings: Settings, db: Database, bundle_dir: Path, meta: ModelMeta, splits: DatasetSplits
) -> dict[str, Any]:
    """Evaluate a bundle on the test split (training.evaluate) and store the result."""
    from training.evaluate import evaluate  # TensorFlow-heavy: only when really evaluating
    from watcher.models_watch import load_classifier

    classifier = load_classifier(bundle_dir, settings.detector)
    report = evaluate(classifier, splits.test)
    metrics = dict(report.metrics)
    fp = fingerprint(splits.test)
    metrics["data_fingerprint"] = fp
    metrics[PER_IMAGE] = per_image(report, splits.test, splits.root)
    store_evaluation(db, meta, bundle_dir, test_dataset_name(splits), fp, metrics)
    return metrics


def per_image(report: Any, samples: Sequence[Sample], root: Path) -> dict[str, list[Any]]:
    """Per-image scores with their files (relative to root) for curves, gallery and drift."""
    used = getattr(report, "samples", None)
    if used is None:
        # Without the evaluated sample list, scores align with the input only if none of the
        # files was rejected by the decoder.
        used = samples if len(samples) == len(report.scores) else ()
    return {
        "paths": [_relative(s.path, root) for s in used],
        "labels": [int(s.label) for s in used],
        "sources": [s.source for s in used],
        "scores": [round(float(x), 6) for x in report.scores],
    }


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def scored_images(metrics: dict[str, Any] | None, root: Path) -> list[ScoredImage]:
    """The stored per-image scores as ScoredImage rows (empty if not stored)."""
    data = (metrics or {}).get(PER_IMAGE) or {}
    paths = data.get("paths") or []
    if len(paths) != len(data.get("scores") or []):
        return []
    return [
        ScoredImage(root / p, int(label), str(src), float(score))
        for p, label, src, score in zip(
            paths, data["labels"], data["sources"], data["scores"], strict=True
        )
    ]


def store_evaluation(
    db: Database, meta: ModelMeta, bundle_dir: Path, dataset: str, fp: str, metrics: dict[str, Any]
) -> None:
    """Register the version if new (get-or-create) and add its evaluation."""

    def write(s: Session) -> None:
        queries.register_model_version(
            s,
            version=meta.version,
            arch=meta.arch,
            path=str(bundle_dir),
            input_size=meta.input_size,
            threshold=float(meta.threshold),
            data_fingerprint=meta.data_fingerprint,
            metrics=meta.metrics,
            training=meta.training,
        )
        queries.add_evaluation(
            s, version=meta.version, dataset=dataset, data_fingerprint=fp, metrics=metrics
        )

    db.retrying(write)


def stored_metrics(db: Database, version: str, dataset: str, fp: str) -> dict[str, Any] | None:
    """The stored evaluation of `version` on exactly this data, if there is one."""
    with db.session() as s:
        row = queries.latest_evaluation(s, version, dataset)
        if row is None or row.data_fingerprint != fp or PER_IMAGE not in row.metrics:
            return None
        return dict(row.metrics)


def previous_champion(db: Database, version: str, dataset: str, fp: str) -> PreviousModel | None:
    """The most recently retired champion and its stored evaluation on this data."""
    with db.session() as s:
        prev = _last_retired_champion(s, version)
        if prev is None:
            return None
        row = queries.latest_evaluation(s, prev.version, dataset)
        metrics = dict(row.metrics) if row is not None and row.data_fingerprint == fp else {}
        return PreviousModel(prev.version, metrics)


def _last_retired_champion(s: Session, version: str) -> ModelVersion | None:
    """The model version that served as champion before `version`, if any."""
    retired = [
        m
        for m in queries.list_model_versions(s)
        if m.version != version and m.promoted_at is not None and m.status == "retired"
    ]
    return max(retired, key=lambda m: m.retired_at or m.promoted_at or utcnow(), default=None)
