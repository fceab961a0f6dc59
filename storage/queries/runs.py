"""Evaluations of model versions and training runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Evaluation, ModelVersion, RunStatus, TrainingRun, utcnow
from storage.queries._common import _choice, _require
from storage.queries.registry import _require_version


def add_evaluation(
    s: Session,
    *,
    version: str,
    dataset: str,
    data_fingerprint: str,
    metrics: Mapping[str, Any],
) -> Evaluation:
    """Store the metrics of `version` on one dataset."""
    row = Evaluation(
        model_version_id=_require_version(s, version).id,
        dataset=dataset,
        data_fingerprint=data_fingerprint,
        metrics=dict(metrics),
    )
    s.add(row)
    s.flush()
    return row


def latest_evaluation(s: Session, version: str, dataset: str | None = None) -> Evaluation | None:
    """The newest evaluation of `version` (on `dataset` when given)."""
    stmt = (
        select(Evaluation)
        .join(ModelVersion, ModelVersion.id == Evaluation.model_version_id)
        .where(ModelVersion.version == version)
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
        .limit(1)
    )
    if dataset is not None:
        stmt = stmt.where(Evaluation.dataset == dataset)
    return s.scalars(stmt).first()


def start_training_run(s: Session, config: Mapping[str, Any]) -> int:
    """Record a training run as running; returns its id."""
    row = TrainingRun(config=dict(config), status=RunStatus.RUNNING.value)
    s.add(row)
    s.flush()
    return row.id


def finish_training_run(
    s: Session,
    run_id: int,
    *,
    status: str,
    error: str | None = None,
    candidate_version: str | None = None,
    decision: Mapping[str, Any] | None = None,
) -> None:
    """Record how a training run ended."""
    row = _require(s, TrainingRun, run_id)
    row.status = _choice("status", status, RunStatus)
    row.finished_at = utcnow()
    row.error = error
    row.candidate_version = candidate_version
    row.decision = dict(decision) if decision is not None else None
    s.flush()


def list_training_runs(s: Session, limit: int | None = None) -> list[TrainingRun]:
    """Training runs, newest first."""
    stmt = (
        select(TrainingRun)
        .order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc())
        .limit(limit)
    )
    return list(s.scalars(stmt))
