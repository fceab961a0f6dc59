"""Query functions: each takes a Session and never commits; the caller owns the transaction.

Arguments are plain values (str, int, dict); no detector types cross into storage. Everything
here runs on SQLite and PostgreSQL (ON CONFLICT through each dialect's own insert()).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Insert,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import (
    FINAL_FILE_STATES,
    LABEL_VALUES,
    Base,
    Disposition,
    Evaluation,
    FileRow,
    FileState,
    HumanLabel,
    Image,
    ModelActivation,
    ModelStatus,
    ModelVersion,
    Origin,
    Prediction,
    RunStatus,
    TrainingRun,
    enum_value,
    utcnow,
    verdicts_view,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Base)
T = TypeVar("T")

# Rows of an IN (...) list per statement: far below SQLite's and PostgreSQL's parameter limits.
_CHUNK = 500


class NotFound(LookupError):
    """A row the caller named (model version, file, image...) does not exist."""


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """One row of the `verdicts` view: a file in a final state and what was decided."""

    id: int
    path: str
    sha256: str | None
    status: str
    label: str | None
    score: float | None
    model_version: str | None
    reason: str | None
    created_at: datetime | None
    discovered_at: datetime | None
    decode_ms: float | None
    infer_ms: float | None
    disposition: str | None
    dest_path: str | None
    reason_code: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: datetimes as ISO-8601 strings."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


VERDICT_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(VerdictRow))


# --- helpers -------------------------------------------------------------------------------


def _choice(name: str, value: str | enum.Enum, allowed: Iterable[Any]) -> str:
    """The stored string for `value`; ValueError naming the argument when it is not allowed."""
    text = enum_value(value)
    options = [enum_value(a) for a in allowed]
    if text not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, not {text!r}")
    return text


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _get_or_create(
    s: Session, model: type[M], key: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[M, bool]:
    """Find the row with `key`, or insert it; survives a concurrent insert of the same key."""
    existing = s.scalars(select(model).filter_by(**key)).one_or_none()
    if existing is not None:
        return existing, False
    row = model(**key, **values)
    try:
        # A savepoint, so losing the race rolls back only this insert, not the caller's work.
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        logger.debug("%s %s inserted concurrently; using that row", model.__name__, dict(key))
        return s.scalars(select(model).filter_by(**key)).one(), False
    return row, True


def _insert_skipping_existing(s: Session, model: type[Base], unique: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (unique) DO NOTHING for the session's dialect.

    A row whose key exists, or was inserted by a concurrent transaction (PostgreSQL waits for
    that one to commit), is skipped instead of failing the statement: the set-based form of
    _get_or_create's savepoint, without a savepoint per row.
    """
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=list(unique))
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=list(unique))
    raise NotImplementedError(f"no INSERT ... ON CONFLICT for the {dialect} dialect")


def _require(s: Session, model: type[M], row_id: int) -> M:
    row = s.get(model, row_id)
    if row is None:
        raise NotFound(f"no {model.__tablename__} row with id {row_id}")
    return row


def _require_version(s: Session, version: str) -> ModelVersion:
    row = get_model_version(s, version)
    if row is None:
        raise NotFound(f"unknown model version {version!r}")
    return row


# --- images and predictions ----------------------------------------------------------------


def upsert_image(
    s: Session,
    sha256: str,
    size_bytes: int,
    width: int | None = None,
    height: int | None = None,
    fmt: str | None = None,
) -> Image:
    """The image with this content hash, created if new; fills in details it lacked."""
    image, created = _get_or_create(
        s,
        Image,
        {"sha256": sha256},
        {"size_bytes": size_bytes, "width": width, "height": height, "format": fmt},
    )
    if not created:
        # An earlier sighting may have been rejected before the header was read.
        image.width = image.width if width is None else width
        image.height = image.height if height is None else height
        image.format = image.format if fmt is None else fmt
    return image


def add_prediction(
    s: Session,
    *,
    image_id: int,
    model_version_id: int,
    score: float,
    label: str,
    decode_ms: float | None,
    infer_ms: float | None,
) -> Prediction:
    """Store one model's score for one image; an existing one for the pair is returned as is."""
    prediction, _ = _get_or_create(
        s,
        Prediction,
        {"image_id": image_id, "model_version_id": model_version_id},
        {
            "score": float(score),
            "label": _choice("label", label, LABEL_VALUES),
            "decode_ms": decode_ms,
            "infer_ms": infer_ms,
        },
    )
    return prediction


def predictions_for(
    s: Session, sha256s: Collection[str], model_version_id: int
) -> dict[str, Prediction]:
    """Existing predictions of one model version, by image hash (to skip re-scoring)."""
    found: dict[str, Prediction] = {}
    for chunk in _chunks(list(dict.fromkeys(sha256s))):
        stmt = (
            select(Image.sha256, Prediction)
            .join(Prediction, Prediction.image_id == Image.id)
            .where(Image.sha256.in_(chunk), Prediction.model_version_id == model_version_id)
        )
        for sha256, prediction in s.execute(stmt):
            found[sha256] = prediction
    return found


# --- model registry ------------------------------------------------------------------------


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


# --- evaluations and training runs ---------------------------------------------------------


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


# --- human labels --------------------------------------------------------------------------


def set_label(s: Session, sha256: str, label: str, note: str = "") -> HumanLabel:
    """Record (or replace) a person's label for an already seen image."""
    image = s.scalars(select(Image).where(Image.sha256 == sha256)).one_or_none()
    if image is None:
        raise NotFound(f"no image with sha256 {sha256}")
    value = _choice("label", label, LABEL_VALUES)
    row, created = _get_or_create(
        s, HumanLabel, {"image_id": image.id}, {"label": value, "note": note}
    )
    if not created:
        row.label, row.note, row.created_at = value, note, utcnow()
    s.flush()
    return row


def human_labels(s: Session) -> list[tuple[str, str, str | None]]:
    """(sha256, label, latest path) per labelled image; the path is the moved-to one if moved."""
    latest = (
        select(FileRow.sha256, func.max(FileRow.id).label("file_id"))
        .where(FileRow.sha256.is_not(None))
        .group_by(FileRow.sha256)
        .subquery()
    )
    where_now = case(
        (
            and_(
                FileRow.disposition == Disposition.MOVED.value,
                FileRow.dest_path.is_not(None),
            ),
            FileRow.dest_path,
        ),
        else_=FileRow.path,
    )
    stmt = (
        select(Image.sha256, HumanLabel.label, where_now)
        .join(HumanLabel, HumanLabel.image_id == Image.id)
        .outerjoin(latest, latest.c.sha256 == Image.sha256)
        .outerjoin(FileRow, FileRow.id == latest.c.file_id)
        .order_by(HumanLabel.id)
    )
    return [(sha, label, path) for sha, label, path in s.execute(stmt)]


# --- file arrivals -------------------------------------------------------------------------


def get_file(s: Session, file_id: int) -> FileRow | None:
    """The file arrival with this id, if any."""
    return s.get(FileRow, file_id)


def discover_file(
    s: Session, *, path: str, size_bytes: int, mtime_ns: int, origin: str
) -> tuple[FileRow, bool]:
    """Record a file arrival (path, size, mtime) once; returns (row, created)."""
    return _get_or_create(
        s,
        FileRow,
        {"path": path, "size_bytes": size_bytes, "mtime_ns": mtime_ns},
        {"origin": _choice("origin", origin, Origin), "state": FileState.PENDING.value},
    )


def claim_files(
    s: Session,
    *,
    worker: str,
    limit: int,
    stale_after_s: float,
    paths: Collection[str] | None = None,
) -> list[FileRow]:
    """Atomically claim up to `limit` pending (or stale claimed) files for `worker`, by id.

    attempts is incremented. Safe against concurrent claimers on SQLite and PostgreSQL.
    """
    if paths is None:
        return _claim(s, worker=worker, limit=limit, stale_after_s=stale_after_s, paths=None)
    claimed: list[FileRow] = []
    for chunk in _chunks(list(dict.fromkeys(paths))):
        if len(claimed) >= limit:
            break
        left = limit - len(claimed)
        claimed += _claim(s, worker=worker, limit=left, stale_after_s=stale_after_s, paths=chunk)
    return claimed


def _claimable(stale_before: datetime) -> ColumnElement[bool]:
    """Pending, or claimed before `stale_before` (its worker presumably died)."""
    return or_(
        FileRow.state == FileState.PENDING.value,
        and_(FileRow.state == FileState.CLAIMED.value, FileRow.claimed_at < stale_before),
    )


def _claim(
    s: Session, *, worker: str, limit: int, stale_after_s: float, paths: list[str] | None
) -> list[FileRow]:
    """SELECT candidate ids [FOR UPDATE SKIP LOCKED], then UPDATE those still claimable."""
    if limit <= 0:
        return []
    now = utcnow()
    claimable = _claimable(now - timedelta(seconds=stale_after_s))
    candidates = select(FileRow.id).where(claimable)
    if paths is not None:
        candidates = candidates.where(FileRow.path.in_(paths))
    # SKIP LOCKED: PostgreSQL claimers pass over each other's rows instead of queueing behind
    # them; SQLite ignores it (its writers are serialised anyway). Two statements on purpose:
    # as one `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL
    # may rescan the subquery per row, skip the rows it just updated and claim more than n.
    ids = list(
        s.scalars(candidates.order_by(FileRow.id).limit(limit).with_for_update(skip_locked=True))
    )
    if not ids:
        return []
    # The condition is checked again, so a row another claimer took since the SELECT is
    # never claimed twice.
    stmt = (
        update(FileRow)
        .where(FileRow.id.in_(ids), claimable)
        .values(
            state=FileState.CLAIMED.value,
            claimed_by=worker,
            claimed_at=now,
            attempts=FileRow.attempts + 1,
            updated_at=now,
        )
        .returning(FileRow)
    )
    rows = s.scalars(
        stmt, execution_options={"synchronize_session": False, "populate_existing": True}
    ).all()
    return sorted(rows, key=lambda row: row.id)


def release_claims(s: Session, worker: str) -> int:
    """Return `worker`'s claimed files to pending (clean shutdown); returns how many.

    The claim's attempt is given back: an orderly stop is not a failed attempt.
    """
    stmt = (
        update(FileRow)
        .where(FileRow.state == FileState.CLAIMED.value, FileRow.claimed_by == worker)
        .values(
            state=FileState.PENDING.value,
            claimed_by=None,
            claimed_at=None,
            attempts=case((FileRow.attempts > 0, FileRow.attempts - 1), else_=0),
            updated_at=utcnow(),
        )
    )
    result = cast(
        CursorResult[Any], s.execute(stmt, execution_options={"synchronize_session": "fetch"})
    )
    return result.rowcount


def requeue_rejected(s: Session, file_ids: Collection[int], code: str) -> set[int]:
    """Put files rejected with reason `code` back to pending, to be screened again.

    Returns the ids that were requeued; rows in any other state or with another code are left
    alone.
    """
    if not file_ids:
        return set()
    stmt = (
        update(FileRow)
        .where(
            FileRow.id.in_(sorted(file_ids)),
            FileRow.state == FileState.REJECTED.value,
            FileRow.reason_code == code,
        )
        .values(
            state=FileState.PENDING.value,
            reason_code=None,
            reason=None,
            attempts=0,
            screened_at=None,
            updated_at=utcnow(),
        )
        .returning(FileRow.id)
    )
    return set(s.scalars(stmt, execution_options={"synchronize_session": "fetch"}))


def _finish(s: Session, file_id: int, state: FileState, disposition: str | None) -> FileRow:
    row = _require(s, FileRow, file_id)
    now = utcnow()
    row.state = state.value
    row.screened_at = now
    row.updated_at = now
    if disposition is not None:
        row.disposition = _choice("disposition", disposition, Disposition)
    return row


def mark_classified(
    s: Session,
    file_id: int,
    *,
    sha256: str,
    prediction_id: int,
    disposition: str | None = None,
) -> FileRow:
    """Final state: classified by `prediction_id`."""
    row = _finish(s, file_id, FileState.CLASSIFIED, disposition)
    row.sha256 = sha256
    row.prediction_id = prediction_id
    row.reason_code = None
    row.reason = None
    s.flush()
    return row


def mark_rejected(
    s: Session,
    file_id: int,
    *,
    code: str,
    reason: str,
    sha256: str | None = None,
    disposition: str | None = None,
) -> FileRow:
    """Final state: rejected (not an image, truncated, ...) with a code and a sentence."""
    row = _finish(s, file_id, FileState.REJECTED, disposition)
    row.sha256 = sha256 if sha256 is not None else row.sha256
    row.prediction_id = None
    row.reason_code = code
    row.reason = reason
    s.flush()
    return row


def due_dispositions(s: Session, now: datetime, limit: int) -> list[FileRow]:
    """Screened files whose disposition is pending and due (next_attempt_at empty or passed).

    To retry later, record disposition "pending" with next_attempt_at; "failed" is final.
    """
    stmt = (
        select(FileRow)
        .where(
            FileRow.disposition == Disposition.PENDING.value,
            FileRow.state.in_(FINAL_FILE_STATES),
            or_(FileRow.next_attempt_at.is_(None), FileRow.next_attempt_at <= now),
        )
        .order_by(FileRow.id)
        .limit(limit)
    )
    return list(s.scalars(stmt))


def record_disposition(
    s: Session,
    file_id: int,
    *,
    disposition: str,
    dest_path: str | None = None,
    reason: str | None = None,
    next_attempt_at: datetime | None = None,
) -> FileRow:
    """Record what happened to the file itself (moved, kept, failed, pending retry).

    `reason` is stored for classified files only: a rejected file keeps its rejection reason.
    """
    row = _require(s, FileRow, file_id)
    row.disposition = _choice("disposition", disposition, Disposition)
    row.dest_path = dest_path
    row.next_attempt_at = next_attempt_at
    if row.state != FileState.REJECTED:
        row.reason = reason
    row.updated_at = utcnow()
    s.flush()
    return row


# --- many files at once (the daemon's writer thread) ---------------------------------------
# The same effects as the single-row functions above, in a few set-based statements per batch:
# per-row ORM loads, flushes and savepoints cost the writer ~4 CPU-ms per file (0.6-0.7 ms
# set-based), spent holding the GIL while the model waits.

_FileKey = tuple[str, int, int]


class FileArrival(NamedTuple):
    """A file noticed in a folder: the key of its `files` row and how it was noticed."""

    path: str
    size_bytes: int
    mtime_ns: int
    origin: str


@dataclass(frozen=True, slots=True)
class ClassifiedFile:
    """A claimed file's model verdict, to store with others by store_classified()."""

    file_id: int
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    format: str | None
    model_version_id: int
    score: float
    label: str
    decode_ms: float | None
    infer_ms: float | None
    # None leaves the row's disposition as it is.
    disposition: str | None


class DispositionUpdate(NamedTuple):
    """What happened to one file itself; the arguments of record_disposition()."""

    file_id: int
    disposition: str
    dest_path: str | None = None
    reason: str | None = None
    next_attempt_at: datetime | None = None


def discover_files(s: Session, arrivals: Sequence[FileArrival]) -> list[tuple[FileRow, bool]]:
    """discover_file() for many arrivals: one INSERT ... ON CONFLICT DO NOTHING, then SELECT.

    Returns (row, created) per arrival, in order; an arrival listed twice is created once.
    """
    if not arrivals:
        return []
    now = utcnow()
    new: dict[_FileKey, dict[str, Any]] = {}
    for a in arrivals:
        origin = _choice("origin", a.origin, Origin)
        new.setdefault(
            (a.path, a.size_bytes, a.mtime_ns),
            {
                "path": a.path,
                "size_bytes": a.size_bytes,
                "mtime_ns": a.mtime_ns,
                "origin": origin,
                "state": FileState.PENDING.value,
                "attempts": 0,
                "discovered_at": now,
                "updated_at": now,
            },
        )
    stmt = _insert_skipping_existing(s, FileRow, ("path", "size_bytes", "mtime_ns"))
    # Sorted: concurrent PostgreSQL writers then lock keys in one order and cannot deadlock.
    created = set(s.scalars(stmt.returning(FileRow.id), [new[key] for key in sorted(new)]))
    rows = _files_by_key(s, new)
    found: list[tuple[FileRow, bool]] = []
    for a in arrivals:
        row = rows[(a.path, a.size_bytes, a.mtime_ns)]
        found.append((row, row.id in created))
        created.discard(row.id)  # listed again: not new the second time
    return found


def _files_by_key(s: Session, keys: Collection[_FileKey]) -> dict[_FileKey, FileRow]:
    """The `files` rows with these (path, size, mtime) keys; NotFound if one is missing."""
    rows: dict[_FileKey, FileRow] = {}
    # path IN (...) uses the unique index's first column; other arrivals of a path are dropped.
    for chunk in _chunks(sorted({path for path, _, _ in keys})):
        for row in s.scalars(select(FileRow).where(FileRow.path.in_(chunk))):
            rows[(row.path, row.size_bytes, row.mtime_ns)] = row
    missing = [key for key in keys if key not in rows]
    if missing:
        raise NotFound(f"files rows vanished while being discovered: {missing[:3]}")
    return rows


def store_classified(s: Session, items: Sequence[ClassifiedFile]) -> datetime:
    """upsert_image + add_prediction + mark_classified for many files, set-based.

    Same content in several files shares one image and one prediction (the first item's score);
    returns the screened_at time written to the files.
    """
    now = utcnow()
    if not items:
        return now
    image_ids = _upsert_images(s, items, now)
    prediction_ids = _insert_predictions(s, items, image_ids, now)
    updates: list[dict[str, Any]] = []
    for item in sorted(items, key=lambda i: i.file_id):
        values = {
            "id": item.file_id,
            "state": FileState.CLASSIFIED.value,
            "sha256": item.sha256,
            "prediction_id": prediction_ids[(image_ids[item.sha256], item.model_version_id)],
            "reason_code": None,
            "reason": None,
            "screened_at": now,
            "updated_at": now,
        }
        if item.disposition is not None:
            values["disposition"] = _choice("disposition", item.disposition, Disposition)
        updates.append(values)
    # ORM bulk UPDATE by primary key: one executemany; a missing file id raises StaleDataError.
    s.execute(update(FileRow), updates)
    return now


_IMAGE_DETAILS = ("width", "height", "format")


def _upsert_images(s: Session, items: Sequence[ClassifiedFile], now: datetime) -> dict[str, int]:
    """Image ids by sha256; new images inserted, known ones given details they lacked."""
    wanted = _wanted_images(items, now)
    stmt = _insert_skipping_existing(s, Image, ("sha256",))
    s.execute(stmt, [wanted[sha] for sha in sorted(wanted)])
    ids: dict[str, int] = {}
    stale: list[dict[str, Any]] = []
    columns = (Image.id, Image.sha256, Image.width, Image.height, Image.format)
    for chunk in _chunks(sorted(wanted)):
        for image_id, sha256, *known in s.execute(select(*columns).where(Image.sha256.in_(chunk))):
            ids[sha256] = image_id
            want = wanted[sha256]
            merged = {
                name: old if want[name] is None else want[name]
                for name, old in zip(_IMAGE_DETAILS, known, strict=True)
            }
            # An earlier sighting may have been stored before its header was read.
            if list(merged.values()) != known:
                stale.append({"id": image_id, **merged})
    if stale:
        s.execute(update(Image), stale)
    return ids


def _wanted_images(items: Sequence[ClassifiedFile], now: datetime) -> dict[str, dict[str, Any]]:
    """Insert values per sha256: as upsert_image() in turn, later known details win."""
    wanted: dict[str, dict[str, Any]] = {}
    for item in items:
        row = wanted.setdefault(
            item.sha256,
            {"sha256": item.sha256, "size_bytes": item.size_bytes, "first_seen_at": now}
            | dict.fromkeys(_IMAGE_DETAILS),
        )
        details = zip(_IMAGE_DETAILS, (item.width, item.height, item.format), strict=True)
        row.update((name, value) for name, value in details if value is not None)
    return wanted


def _insert_predictions(
    s: Session, items: Sequence[ClassifiedFile], image_ids: Mapping[str, int], now: datetime
) -> dict[tuple[int, int], int]:
    """Prediction ids by (image id, model version id); an existing prediction is kept as is."""
    wanted: dict[tuple[int, int], dict[str, Any]] = {}
    for item in items:
        key = (image_ids[item.sha256], item.model_version_id)
        label = _choice("label", item.label, LABEL_VALUES)
        wanted.setdefault(
            key,
            {
                "image_id": key[0],
                "model_version_id": key[1],
                "score": float(item.score),
                "label": label,
                "decode_ms": item.decode_ms,
                "infer_ms": item.infer_ms,
                "created_at": now,
            },
        )
    stmt = _insert_skipping_existing(s, Prediction, ("image_id", "model_version_id"))
    s.execute(stmt, [wanted[key] for key in sorted(wanted)])
    ids: dict[tuple[int, int], int] = {}
    for version_id in sorted({version for _, version in wanted}):
        image_list = sorted(image for image, version in wanted if version == version_id)
        for chunk in _chunks(image_list):
            stmt_ids = select(Prediction.id, Prediction.image_id).where(
                Prediction.model_version_id == version_id, Prediction.image_id.in_(chunk)
            )
            for prediction_id, image_id in s.execute(stmt_ids):
                ids[(image_id, version_id)] = prediction_id
    return ids


def record_dispositions(s: Session, updates: Sequence[DispositionUpdate]) -> None:
    """record_disposition() for many files in one executemany UPDATE; NotFound if one is missing.

    `reason` is stored for classified files only: a rejected file keeps its rejection reason.
    """
    if not updates:
        return
    stmt = (
        update(FileRow)
        .where(FileRow.id == bindparam("b_id"))
        .values(
            disposition=bindparam("b_disposition"),
            dest_path=bindparam("b_dest_path"),
            next_attempt_at=bindparam("b_next_attempt_at"),
            reason=case(
                (FileRow.state == FileState.REJECTED.value, FileRow.reason),
                else_=bindparam("b_reason"),
            ),
            updated_at=utcnow(),
        )
    )
    params = [
        {
            "b_id": u.file_id,
            "b_disposition": _choice("disposition", u.disposition, Disposition),
            "b_dest_path": u.dest_path,
            "b_next_attempt_at": u.next_attempt_at,
            "b_reason": u.reason,
        }
        for u in sorted(updates, key=lambda u: u.file_id)
    ]
    # core_only: a plain executemany; the ORM's bulk-by-primary-key form cannot keep a
    # rejected file's reason (the CASE above).
    result = cast(
        CursorResult[Any],
        s.execute(stmt, params, execution_options={"dml_strategy": "core_only"}),
    )
    if result.rowcount != len(params):
        raise NotFound(f"{len(params) - result.rowcount} of {len(params)} files rows do not exist")


# --- verdicts ------------------------------------------------------------------------------


def list_verdicts(
    s: Session,
    *,
    label: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[VerdictRow]:
    """Rows of the `verdicts` view, newest first, optionally filtered."""
    v = verdicts_view.c
    stmt = select(verdicts_view).order_by(v.created_at.desc(), v.id.desc()).limit(limit)
    if label is not None:
        stmt = stmt.where(v.label == _choice("label", label, LABEL_VALUES))
    if status is not None:
        stmt = stmt.where(v.status == _choice("status", status, FINAL_FILE_STATES))
    if since is not None:
        stmt = stmt.where(v.created_at >= since)
    return [VerdictRow(**row._mapping) for row in s.execute(stmt)]
