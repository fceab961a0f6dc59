"""Faces a model scored in a picture, stored with the picture's prediction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Face, FileRow
from storage.queries._common import _chunks, _insert_skipping_existing


@dataclass(frozen=True, slots=True)
class FaceRecord:
    """One face of a picture: index (0 = most confident), box in pixels, scores."""

    index: int
    x: int
    y: int
    w: int
    h: int
    detector_score: float
    score: float

    def to_json_dict(self) -> dict[str, Any]:
        """The fields scan --json and verdicts --format json print for a face."""
        return {
            "index": self.index,
            "box": [self.x, self.y, self.w, self.h],
            "detector_score": round(self.detector_score, 4),
            "score": self.score,
        }


def insert_faces(s: Session, faces: Mapping[int, Sequence[FaceRecord]]) -> None:
    """Faces by prediction id; a prediction's faces already stored are kept as they are."""
    rows = [
        {
            "prediction_id": prediction_id,
            "face_index": f.index,
            "x": f.x,
            "y": f.y,
            "w": f.w,
            "h": f.h,
            "detector_score": float(f.detector_score),
            "score": float(f.score),
        }
        for prediction_id, records in sorted(faces.items())
        for f in records
    ]
    if rows:
        s.execute(_insert_skipping_existing(s, Face, ("prediction_id", "face_index")), rows)


def faces_for_files(s: Session, file_ids: Collection[int]) -> dict[int, list[FaceRecord]]:
    """Faces of the verdicts of these files (by file id), in face order."""
    links: dict[int, int] = {}
    for chunk in _chunks(sorted(set(file_ids))):
        stmt = select(FileRow.id, FileRow.prediction_id).where(
            FileRow.id.in_(chunk), FileRow.prediction_id.is_not(None)
        )
        links.update({fid: pid for fid, pid in s.execute(stmt) if pid is not None})
    by_prediction = faces_for(s, links.values())
    return {fid: by_prediction.get(pid, []) for fid, pid in links.items()}


def faces_for(s: Session, prediction_ids: Collection[int]) -> dict[int, list[FaceRecord]]:
    """Stored faces by prediction id, in face order."""
    found: dict[int, list[FaceRecord]] = {}
    for chunk in _chunks(sorted(set(prediction_ids))):
        stmt = select(Face).where(Face.prediction_id.in_(chunk)).order_by(Face.face_index)
        for face in s.scalars(stmt):
            found.setdefault(face.prediction_id, []).append(
                FaceRecord(
                    face.face_index,
                    face.x,
                    face.y,
                    face.w,
                    face.h,
                    face.detector_score,
                    face.score,
                )
            )
    return found
