"""Images, predictions, human labels, evaluations and training runs."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage import queries as q
from storage.db import Database
from storage.models import Image, Prediction
from tests.storage.factories import Seed

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_upsert_image_creates_once_and_fills_in_details(db: Database) -> None:
    with db.session() as s:
        first = q.upsert_image(s, SHA_A, 10)
        assert (first.width, first.height, first.format) == (None, None, None)
    with db.session() as s:
        again = q.upsert_image(s, SHA_A, 10, 64, 48, "PNG")
        assert again.id == first.id
        q.upsert_image(s, SHA_A, 10)  # knowing less later erases nothing
    with db.session() as s:
        image = s.scalars(select(Image)).one()
        assert (image.width, image.height, image.format) == (64, 48, "PNG")


def test_image_sha256_is_unique(db: Database) -> None:
    with db.session() as s:
        s.add(Image(sha256=SHA_A, size_bytes=1))
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Image(sha256=SHA_A, size_bytes=2))


def test_add_prediction_is_idempotent_per_image_and_model(db: Database, seed: Seed) -> None:
    model, other_model = seed.model(), seed.model()
    with db.session() as s:
        image = q.upsert_image(s, SHA_A, 10)
        ids = {"image_id": image.id, "model_version_id": model}
        first = q.add_prediction(s, **ids, score=0.7, label="ai", decode_ms=1, infer_ms=2)
        second = q.add_prediction(s, **ids, score=0.1, label="real", decode_ms=1, infer_ms=3)
        assert first.id == second.id and second.score == 0.7
        with pytest.raises(ValueError, match="label"):
            q.add_prediction(
                s,
                image_id=image.id,
                model_version_id=other_model,
                score=0.5,
                label="fake",
                decode_ms=None,
                infer_ms=None,
            )
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Prediction(image_id=image.id, model_version_id=model, score=0.2, label="real"))


def test_predictions_for_returns_only_that_models_scores(db: Database, seed: Seed) -> None:
    m1, m2 = seed.model(), seed.model()
    with db.session() as s:
        a = q.upsert_image(s, SHA_A, 1)
        b = q.upsert_image(s, SHA_B, 1)
        q.add_prediction(
            s, image_id=a.id, model_version_id=m1, score=0.9, label="ai", decode_ms=1, infer_ms=1
        )
        q.add_prediction(
            s, image_id=b.id, model_version_id=m2, score=0.2, label="real", decode_ms=1, infer_ms=1
        )
    many = [SHA_A, SHA_B, *(f"{i:064x}" for i in range(1200))]  # more than one IN chunk
    with db.session() as s:
        found = q.predictions_for(s, many, m1)
        assert set(found) == {SHA_A} and found[SHA_A].score == 0.9
        assert q.predictions_for(s, [], m1) == {}


def test_labels_and_latest_paths(db: Database, seed: Seed) -> None:
    model = seed.model()
    _, sha = seed.classified(model, path="/in/old.jpg")
    second, _ = seed.classified(model, path="/in/new.jpg")
    with db.session() as s:
        # the same content arrives again under a new name, then is moved
        q.mark_classified(s, second, sha256=sha, prediction_id=1)
        q.record_disposition(s, second, disposition="moved", dest_path="/out/ai/new.jpg")
        q.upsert_image(s, SHA_B, 1)
        q.set_label(s, sha, "real", note="my own photo")
        q.set_label(s, SHA_B, "ai")
        q.set_label(s, SHA_B, "real", note="changed my mind")
    with db.session() as s:
        assert q.human_labels(s) == [
            (sha, "real", "/out/ai/new.jpg"),
            (SHA_B, "real", None),  # never seen as a file
        ]
        with pytest.raises(q.NotFound):
            q.set_label(s, "c" * 64, "ai")
        with pytest.raises(ValueError):
            q.set_label(s, sha, "maybe")


def test_evaluations(db: Database, seed: Seed) -> None:
    seed.model("v1")
    with db.session() as s:
        q.add_evaluation(s, version="v1", dataset="val", data_fingerprint="f", metrics={"a": 1})
        q.add_evaluation(s, version="v1", dataset="test", data_fingerprint="f", metrics={"a": 2})
        with pytest.raises(q.NotFound):
            q.add_evaluation(s, version="v9", dataset="x", data_fingerprint="", metrics={})
    with db.session() as s:
        latest = q.latest_evaluation(s, "v1")
        assert latest is not None and latest.metrics == {"a": 2}
        on_val = q.latest_evaluation(s, "v1", dataset="val")
        assert on_val is not None and on_val.metrics == {"a": 1}
        assert q.latest_evaluation(s, "v9") is None


def test_training_runs(db: Database) -> None:
    with db.session() as s:
        first = q.start_training_run(s, {"epochs": 3})
        second = q.start_training_run(s, {"epochs": 5})
    with db.session() as s:
        q.finish_training_run(
            s,
            first,
            status="succeeded",
            candidate_version="v2",
            decision={"promote": False, "reasons": ["worse"]},
        )
        q.finish_training_run(s, second, status="failed", error="out of memory")
        with pytest.raises(ValueError):
            q.finish_training_run(s, second, status="exploded")
    with db.session() as s:
        runs = q.list_training_runs(s)
        assert [r.id for r in runs] == [second, first]
        assert (runs[0].status, runs[0].error) == ("failed", "out of memory")
        assert runs[1].decision == {"promote": False, "reasons": ["worse"]}
        assert runs[1].finished_at is not None and runs[1].config == {"epochs": 3}
        assert len(q.list_training_runs(s, limit=1)) == 1
