"""The `verdicts` view: files in a final state and what was decided."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import FINAL_FILE_STATES, VERDICT_LABELS, Origin, verdicts_view
from storage.queries._common import _choice, _chunks


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
    # Faces scored (None for verdicts from before faces were looked for), the best face's box
    # and score, and the whole picture's own score.
    faces: int | None = None
    face_x: int | None = None
    face_y: int | None = None
    face_w: int | None = None
    face_h: int | None = None
    face_score: float | None = None
    whole_score: float | None = None
    # One readable line of the image's provenance findings ("" none; None: not read), and
    # what decided the label: "model" or "provenance".
    evidence: str | None = None
    decided_by: str | None = None
    # Where the file came from: "inbox", or "scan" (a one-off check of a file elsewhere).
    origin: str | None = None

    @property
    def location(self) -> str:
        """Where the file is now: where it was sorted to, else where it was found."""
        return self.dest_path or self.path

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: datetimes as ISO-8601 strings."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


VERDICT_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(VerdictRow))


def list_verdicts(
    s: Session,
    *,
    label: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    origin: str | None = None,
    sha256: str | None = None,
    offset: int = 0,
) -> list[VerdictRow]:
    """Rows of the `verdicts` view, newest first, optionally filtered (and paged)."""
    v = verdicts_view.c
    stmt = select(verdicts_view).order_by(v.created_at.desc(), v.id.desc())
    stmt = stmt.limit(limit).offset(offset or None)
    if sha256 is not None:
        stmt = stmt.where(v.sha256 == sha256)
    if label is not None:
        stmt = stmt.where(v.label == _choice("label", label, VERDICT_LABELS))
    if status is not None:
        stmt = stmt.where(v.status == _choice("status", status, FINAL_FILE_STATES))
    if since is not None:
        stmt = stmt.where(v.created_at >= since)
    if origin is not None:
        stmt = stmt.where(v.origin == _choice("origin", origin, Origin))
    return [VerdictRow(**row._mapping) for row in s.execute(stmt)]


def verdicts_of(s: Session, file_ids: Collection[int]) -> dict[int, VerdictRow]:
    """The `verdicts` rows of these files, by file id (files not in a final state left out)."""
    found: dict[int, VerdictRow] = {}
    for chunk in _chunks(sorted(set(file_ids))):
        stmt = select(verdicts_view).where(verdicts_view.c.id.in_(chunk))
        found.update((row.id, VerdictRow(**row._mapping)) for row in s.execute(stmt))
    return found


def ping(s: Session) -> None:
    """A trivial query: raises when the database cannot be reached."""
    s.execute(select(1)).scalar_one()
