"""File arrivals: the state machine (pending, claimed, final), claims and dispositions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from storage.models import FINAL_FILE_STATES, Disposition, FileRow, FileState, Origin, utcnow
from storage.queries._common import (
    NotFound,
    _choice,
    _chunks,
    _get_or_create,
    _insert_skipping_existing,
    _require,
)


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


def held_claims(s: Session, file_ids: Collection[int], worker: str) -> set[int]:
    """The files among `file_ids` still claimed by `worker`, locked until commit (PostgreSQL).

    Another daemon takes over a claim older than its claim timeout; a verdict stored for such
    a file anyway would screen it twice. Locking the rows makes the check and the store one
    step for other daemons (SQLite has one writer at a time anyway).
    """
    held: set[int] = set()
    for chunk in _chunks(sorted(set(file_ids))):
        stmt = (
            select(FileRow.id)
            .where(
                FileRow.id.in_(chunk),
                FileRow.state == FileState.CLAIMED.value,
                FileRow.claimed_by == worker,
            )
            .with_for_update()
        )
        held.update(s.scalars(stmt))
    return held


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


def backlog_counts(s: Session, since: datetime) -> tuple[int, int]:
    """(files screened since `since`, files still waiting to be screened): the start-up
    backlog's progress."""
    waiting = (FileRow.state == FileState.PENDING) | (FileRow.state == FileState.CLAIMED)
    stmt = select(
        func.count().filter(FileRow.screened_at >= since),
        func.count().filter(waiting),
    )
    done, left = s.execute(stmt).one()
    return int(done or 0), int(left or 0)
