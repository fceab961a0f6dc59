"""Faces stored with a verdict, and the verdicts view's face columns."""

from __future__ import annotations

from sqlalchemy import select, text

from storage import queries as q
from storage.db import Database
from storage.models import Face, Prediction
from storage.queries.faces import FaceRecord, faces_for_files
from storage.queries.images import ClassifiedFile
from tests.storage.factories import Seed

SHA_A = "a" * 64
SHA_B = "b" * 64


def _verdict(file_id: int, sha256: str, model_id: int, **changes: object) -> ClassifiedFile:
    values: dict[str, object] = {
        "file_id": file_id,
        "sha256": sha256,
        "size_bytes": 100,
        "width": 640,
        "height": 480,
        "format": "JPEG",
        "model_version_id": model_id,
        "score": 0.8,
        "label": "ai",
        "decode_ms": 1.0,
        "infer_ms": 2.0,
        "disposition": "pending",
    }
    return ClassifiedFile(**(values | changes))  # type: ignore[arg-type]


FACES = (
    FaceRecord(0, 10, 20, 100, 120, 0.98, 0.30),
    FaceRecord(1, 300, 40, 80, 90, 0.91, 0.95),
)


def test_faces_are_stored_and_the_view_shows_the_best_face(db: Database, seed: Seed) -> None:
    model = seed.model()
    two, none = seed.pending("/in/two.jpg"), seed.pending("/in/none.jpg")
    with db.session() as s:
        q.store_classified(
            s,
            [
                _verdict(two, SHA_A, model, faces=FACES, whole_score=0.6),
                _verdict(none, SHA_B, model, faces=(), whole_score=0.2, score=0.2, label="real"),
            ],
        )
    with db.session() as s:
        rows = {
            r.path: r
            for r in s.execute(
                text(
                    "SELECT path, faces, face_x, face_y, face_w, face_h, face_score, whole_score"
                    " FROM verdicts"
                )
            )
        }
        stored = s.scalars(select(Face).order_by(Face.face_index)).all()
        by_file = faces_for_files(s, [two, none])
    assert [(f.face_index, f.x, f.score) for f in stored] == [(0, 10, 0.30), (1, 300, 0.95)]
    # The best face is the highest-scoring one, not the detector's first.
    assert tuple(rows["/in/two.jpg"][1:]) == (2, 300, 40, 80, 90, 0.95, 0.6)
    assert tuple(rows["/in/none.jpg"][1:]) == (0, None, None, None, None, None, 0.2)
    assert by_file == {two: list(FACES), none: []}


def test_same_content_again_keeps_the_first_faces(db: Database, seed: Seed) -> None:
    model = seed.model()
    first, second = seed.pending("/in/a.jpg"), seed.pending("/in/b.jpg")
    with db.session() as s:
        q.store_classified(s, [_verdict(first, SHA_A, model, faces=FACES[:1])])
    with db.session() as s:
        q.store_classified(s, [_verdict(second, SHA_A, model, faces=FACES)])
    with db.session() as s:
        assert s.scalars(select(Prediction.faces)).all() == [1]
        assert len(s.scalars(select(Face)).all()) == 1
        assert faces_for_files(s, [second]) == {second: [FACES[0]]}


def test_a_verdict_without_a_face_view_has_null_faces(db: Database, seed: Seed) -> None:
    model = seed.model()
    file_id = seed.pending("/in/old.jpg")
    with db.session() as s:
        q.store_classified(s, [_verdict(file_id, SHA_A, model)])
    with db.session() as s:
        row = s.execute(text("SELECT faces, whole_score FROM verdicts")).one()
    assert tuple(row) == (None, None)
