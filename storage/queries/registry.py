"""The model registry: versions, champion promotion and rollback, activations."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ModelActivation, ModelStatus, ModelVersion, utcnow
from storage.queries._common import NotFound, _choice, _get_or_create

logger = logging.getLogger(__name__)


def _require_version(s: Session, version: str) -> ModelVersion:
    row = get_model_version(s, version)
    if row is None:
        raise NotFound(f"unknown model version {version!r}")
    return row


def register_model_version(
    s: Session,
    *,
    version: str,
    arch: str,
    path: str,
    input_size: int,
    threshold: float,
    data_fingerprint: str,
    metrics: Mapping[str, Any],
    training: Mapping[str, Any],
    status: str = "candidate",
) -> ModelVersion:
    """Get or create the registry row for `version` (an existing row is left unchanged)."""
    wanted = _choice("status", status, ModelStatus)
    initial = ModelStatus.CANDIDATE.value if wanted == ModelStatus.CHAMPION else wanted
    row, created = _get_or_create(
        s,
        ModelVersion,
        {"version": version},
        {
            "arch": arch,
            "path": path,
            "status": initial,
            "input_size": input_size,
            "threshold": float(threshold),
            "data_fingerprint": data_fingerprint,
            "metrics": dict(metrics),
            "training": dict(training),
        },
    )
    if created and wanted == ModelStatus.CHAMPION:
        # Through promote(), so an existing champion is retired instead of tripping the
        # one-champion index.
        promote(s, version, {"promote": True, "reasons": ["registered as champion"]})
    return row


def get_model_version(s: Session, version: str) -> ModelVersion | None:
    """The registry row for `version`, if any."""
    return s.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()


def champion(s: Session) -> ModelVersion | None:
    """The model version in service, if one was promoted."""
    stmt = select(ModelVersion).where(ModelVersion.status == ModelStatus.CHAMPION.value)
    return s.scalars(stmt).one_or_none()


def list_model_versions(s: Session) -> list[ModelVersion]:
    """Every registered model version, newest first."""
    stmt = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    return list(s.scalars(stmt))


def promote(s: Session, version: str, decision: Mapping[str, Any]) -> ModelVersion:
    """Make `version` the champion; the previous champion becomes retired."""
    target = _require_version(s, version)
    current = champion(s)
    now = utcnow()
    if current is not None and current.id != target.id:
        current.status = ModelStatus.RETIRED.value
        current.retired_at = now
        # Flush the retirement first: the one-champion index is checked per statement.
        s.flush()
    if target.status != ModelStatus.CHAMPION:
        target.status = ModelStatus.CHAMPION.value
        target.promoted_at = now
        target.retired_at = None
    target.decision = dict(decision)
    s.flush()
    logger.info(
        "model %s promoted to champion (previous: %s)",
        version,
        current.version if current is not None and current.id != target.id else "none",
    )
    return target


def rollback_champion(
    s: Session, decision: Mapping[str, Any]
) -> tuple[ModelVersion | None, ModelVersion]:
    """Bring back the most recently retired champion; returns (retired now, champion now)."""
    stmt = (
        select(ModelVersion)
        .where(
            ModelVersion.status == ModelStatus.RETIRED.value,
            ModelVersion.promoted_at.is_not(None),
            ModelVersion.retired_at.is_not(None),
        )
        .order_by(ModelVersion.retired_at.desc(), ModelVersion.id.desc())
        .limit(1)
    )
    previous = s.scalars(stmt).first()
    if previous is None:
        raise NotFound("no retired champion to roll back to")
    current = champion(s)
    return current, promote(s, previous.version, decision)


def set_model_status(
    s: Session, version: str, status: str, decision: Mapping[str, Any] | None = None
) -> ModelVersion:
    """Change a version's status (to champion goes through promote)."""
    new_status = _choice("status", status, ModelStatus)
    if new_status == ModelStatus.CHAMPION:
        return promote(s, version, decision or {})
    row = _require_version(s, version)
    if new_status == ModelStatus.RETIRED and row.status != ModelStatus.RETIRED:
        row.retired_at = utcnow()
    row.status = new_status
    if decision is not None:
        row.decision = dict(decision)
    s.flush()
    return row


def record_activation(s: Session, version: str, host: str, pid: int) -> ModelActivation:
    """Note that a process (host, pid) started serving `version`."""
    row = ModelActivation(model_version_id=_require_version(s, version).id, host=host, pid=pid)
    s.add(row)
    s.flush()
    return row


def list_activations(s: Session, limit: int | None = None) -> list[tuple[ModelActivation, str]]:
    """Activations with their model version string, newest first."""
    stmt = (
        select(ModelActivation, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelActivation.model_version_id)
        .order_by(ModelActivation.activated_at.desc(), ModelActivation.id.desc())
        .limit(limit)
    )
    return [(activation, version) for activation, version in s.execute(stmt)]
