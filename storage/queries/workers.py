"""Which daemon (worker) screened what: the `claimed_by` of screened files.

A file keeps the id of the last worker that claimed it once it is screened, so per-daemon
figures need no extra column: a claim taken over from a dead daemon counts for the taker.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import FINAL_FILE_STATES, FileRow


def screenings_by_worker(s: Session, since: datetime) -> list[tuple[str, datetime]]:
    """(worker id, screened_at) of every file screened since `since`, by worker, then time."""
    stmt = (
        select(FileRow.claimed_by, FileRow.screened_at)
        .where(
            FileRow.state.in_(FINAL_FILE_STATES),
            FileRow.claimed_by.is_not(None),
            FileRow.screened_at >= since,
        )
        .order_by(FileRow.claimed_by, FileRow.screened_at, FileRow.id)
    )
    return [(str(worker), at) for worker, at in s.execute(stmt) if at is not None]
