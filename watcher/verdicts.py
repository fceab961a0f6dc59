"""Verdicts as people see them, assembled in one place: from an outcome just stored, or from
the stored `verdicts` row (through storage's queries) with its faces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from detector.provenance import Finding, summarize
from detector.scoring import FaceScore
from storage import queries
from storage.models import FileRow, FileState
from storage.queries import VerdictRow
from watcher.messages import Classified, Outcome, Verdict


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What moving and reporting need of a file row as the writer last wrote it.

    Built from the outcome just stored, so a bulk UPDATE needs no ORM row loaded back.
    """

    id: int
    path: str
    size_bytes: int
    mtime_ns: int
    sha256: str | None
    state: str
    disposition: str | None
    reason: str | None
    screened_at: datetime | None

    @classmethod
    def of(cls, row: FileRow) -> StoredFile:
        """The facts of a loaded row."""
        return cls(
            row.id, row.path, row.size_bytes, row.mtime_ns, row.sha256, row.state,
            row.disposition, row.reason, row.screened_at,
        )  # fmt: skip


def face_records(faces: Sequence[FaceScore] | None) -> tuple[queries.FaceRecord, ...] | None:
    """Scored faces as storage records (None: the model has no face view)."""
    if faces is None:
        return None
    return tuple(
        queries.FaceRecord(f.index, *f.box, detector_score=f.detector_score, score=f.score)
        for f in faces
    )


def image_evidence(findings: Sequence[Finding] | None) -> queries.ImageEvidence | None:
    """Provenance findings as storage records (None: the metadata was not read)."""
    if findings is None:
        return None
    items = tuple(queries.EvidenceItem(f.kind, f.strength, f.says) for f in findings)
    return queries.ImageEvidence(items, summarize(findings))


def iso(value: datetime | None) -> str | None:
    """ISO-8601 or None."""
    return value.isoformat() if value is not None else None


def verdict_from_row(row: VerdictRow, faces: Sequence[queries.FaceRecord]) -> Verdict:
    """The one converter from a stored `verdicts` row (and its faces) to a Verdict."""
    return Verdict(
        file_id=row.id,
        path=row.path,
        sha256=row.sha256,
        status=row.status,
        label=row.label,
        score=row.score,
        model_version=row.model_version,
        reason=row.reason,
        created_at=iso(row.created_at),
        decided_by=row.decided_by,
        evidence=row.evidence,
        whole_score=row.whole_score,
        faces=None
        if row.faces is None
        else tuple(
            FaceScore(f.index, (f.x, f.y, f.w, f.h), f.detector_score, f.score) for f in faces
        ),
        decode_ms=row.decode_ms,
        infer_ms=row.infer_ms,
    )


def stored_verdicts(s: Session, file_ids: Sequence[int]) -> Mapping[int, Verdict]:
    """The verdicts of files in a final state, by file id (two queries, whatever the count)."""
    rows = queries.verdicts_of(s, file_ids)
    faces = queries.faces_for_files(s, [i for i, r in rows.items() if r.faces is not None])
    return {i: verdict_from_row(row, faces.get(i, [])) for i, row in rows.items()}


def outcome_verdict(outcome: Outcome, row: StoredFile) -> Verdict:
    """The verdict of an outcome just stored (no extra query)."""
    if isinstance(outcome, Classified):
        return Verdict(
            row.id,
            row.path,
            outcome.sha256,
            FileState.CLASSIFIED,
            outcome.label,
            outcome.score,
            outcome.model_version,
            row.reason,
            iso(row.screened_at),
            decided_by=outcome.decided_by,
            evidence=None if outcome.findings is None else summarize(outcome.findings),
            whole_score=outcome.whole_score,
            faces=outcome.faces,
            decode_ms=outcome.decode_ms,
            infer_ms=outcome.infer_ms,
        )
    return Verdict(
        row.id, row.path, row.sha256, FileState.REJECTED, None, None, None, outcome.reason,
        iso(row.screened_at),
    )  # fmt: skip
