"""screenings_by_worker: which daemon screened what, from the claims of screened files."""

from __future__ import annotations

from datetime import timedelta

from storage import queries as q
from storage.db import Database
from storage.models import utcnow
from tests.storage.factories import Seed


def test_screened_files_count_for_the_worker_that_held_the_claim(db: Database) -> None:
    seed = Seed(db)
    model = seed.model("v1")
    ids = [seed.pending() for _ in range(5)]
    with db.session() as s:
        a = q.claim_files(s, worker="a", limit=3, stale_after_s=60)
        b = q.claim_files(s, worker="b", limit=1, stale_after_s=60)
    with db.session() as s:
        for row in a[:2] + b:  # a's third file is still in flight, the fifth never claimed
            image = q.upsert_image(s, f"{row.id:064d}", 100)
            pred = q.add_prediction(
                s, image_id=image.id, model_version_id=model, score=0.9, label="ai",
                decode_ms=None, infer_ms=None,
            )  # fmt: skip
            q.mark_classified(s, row.id, sha256=f"{row.id:064d}", prediction_id=pred.id)
        q.mark_rejected(s, ids[4], code="empty", reason="empty")  # screened, never claimed
    with db.session() as s:
        found = q.screenings_by_worker(s, utcnow() - timedelta(hours=1))
        later = q.screenings_by_worker(s, utcnow() + timedelta(hours=1))
    assert [worker for worker, _ in found] == ["a", "a", "b"]
    assert all(at.tzinfo is not None for _, at in found)
    assert later == []
