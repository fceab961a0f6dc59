"""Recently screened pictures for people to look at: the verdicts, their faces and evidence.

The `verdicts` view only ever gains columns (faces, evidence ...), so the row is read with
`SELECT *` and optional columns are taken when the schema has them; the `faces` table is read
only where a migration created it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, inspect, text
from sqlalchemy.orm import Session

from storage.models import UTCDateTime
from storage.queries._common import _chunks

FLAGGED_LABELS: tuple[str, ...] = ("ai", "uncertain")


@dataclass(frozen=True, slots=True)
class FaceBox:
    """One face found in a picture: its box in source-image pixels and its scores."""

    index: int
    x: int
    y: int
    w: int
    h: int
    detector_score: float | None
    score: float | None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A screened picture as the review page shows it."""

    id: int
    path: str
    dest_path: str | None
    disposition: str | None
    sha256: str | None
    label: str | None
    score: float | None
    model_version: str | None
    created_at: datetime | None
    evidence: str | None
    faces: tuple[FaceBox, ...]
    face_count: int | None = None  # faces found (0 = none); None = not recorded (older model)
    whole_score: float | None = None  # the whole-picture view's score, where recorded
    decided_by: str | None = None  # what made the label (the model, provenance ...), if recorded

    @property
    def flagged(self) -> bool:
        """Labelled `ai` or `uncertain`: what a person should look at first."""
        return self.label in FLAGGED_LABELS


_RECENT = text(
    "SELECT v.*, f.prediction_id AS review_prediction_id "
    "FROM verdicts v JOIN files f ON f.id = v.id "
    "WHERE v.status = 'classified' "
    "ORDER BY CASE WHEN v.label IN :flagged THEN 0 ELSE 1 END, v.created_at DESC, v.id DESC "
    "LIMIT :n"
).bindparams(bindparam("flagged", expanding=True))

_FACES = text(
    "SELECT prediction_id, face_index, x, y, w, h, detector_score, score FROM faces "
    "WHERE prediction_id IN :ids ORDER BY prediction_id, face_index"
).bindparams(bindparam("ids", expanding=True))


def recent_for_review(s: Session, *, limit: int) -> list[ReviewItem]:
    """Up to `limit` classified pictures: flagged ones first, each group newest first."""
    if limit <= 0:
        return []
    stmt = _RECENT.columns(created_at=UTCDateTime())
    rows = [dict(r._mapping) for r in s.execute(stmt, {"flagged": FLAGGED_LABELS, "n": limit})]
    pids = [int(r["review_prediction_id"]) for r in rows if r["review_prediction_id"] is not None]
    faces = _faces_of(s, pids)
    return [_item(r, faces.get(r["review_prediction_id"]) or _best_face(r)) for r in rows]


def _faces_of(s: Session, prediction_ids: list[int]) -> dict[int, tuple[FaceBox, ...]]:
    """Faces per prediction id; empty where the schema has no `faces` table yet."""
    if not prediction_ids or not inspect(s.connection()).has_table("faces"):
        return {}
    found: dict[int, list[FaceBox]] = defaultdict(list)
    for chunk in _chunks(sorted(set(prediction_ids))):
        for r in s.execute(_FACES, {"ids": chunk}):
            found[int(r.prediction_id)].append(
                FaceBox(
                    int(r.face_index),
                    int(r.x),
                    int(r.y),
                    int(r.w),
                    int(r.h),
                    _float(r.detector_score),
                    _float(r.score),
                )
            )
    return {pid: tuple(boxes) for pid, boxes in found.items()}


def _best_face(row: Mapping[str, Any]) -> tuple[FaceBox, ...]:
    """The view's best-face columns as one box, when the view has them and a face was found."""
    keys = ("face_x", "face_y", "face_w", "face_h")
    if not all(row.get(k) is not None for k in keys):
        return ()
    x, y, w, h = (int(row[k]) for k in keys)
    return (FaceBox(0, x, y, w, h, None, _float(row.get("face_score"))),)


def _item(row: Mapping[str, Any], faces: Sequence[FaceBox]) -> ReviewItem:
    evidence = row.get("evidence")
    return ReviewItem(
        id=int(row["id"]),
        path=str(row["path"]),
        dest_path=row.get("dest_path"),
        disposition=row.get("disposition"),
        sha256=row.get("sha256"),
        label=row.get("label"),
        score=_float(row.get("score")),
        model_version=row.get("model_version"),
        created_at=row.get("created_at"),
        evidence=str(evidence) if evidence not in (None, "") else None,
        faces=tuple(faces),
        face_count=None if row.get("faces") is None else int(row["faces"]),
        whole_score=_float(row.get("whole_score")),
        decided_by=row.get("decided_by"),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
