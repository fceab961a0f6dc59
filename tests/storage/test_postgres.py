"""The same schema and queries on PostgreSQL (opt-in: needs a server and the psycopg driver).

Run with DEEPFAKE_DETECTOR_TEST_PG_URL=postgresql+psycopg://user@127.0.0.1:5432/postgres; each
test module run creates and drops its own database there.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, make_url

from storage import migrate
from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from storage.models import FileRow, utcnow
from tests.storage.factories import Seed

PG_URL = os.environ.get("DEEPFAKE_DETECTOR_TEST_PG_URL", "")
pytestmark = pytest.mark.skipif(not PG_URL, reason="DEEPFAKE_DETECTOR_TEST_PG_URL not set")


@pytest.fixture(scope="module")
def pg_cfg() -> Iterator[StorageConfig]:
    """A throwaway database on the server named by DEEPFAKE_DETECTOR_TEST_PG_URL."""
    pytest.importorskip("psycopg")
    name = f"dfd_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield StorageConfig(url=url)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg(pg_cfg: StorageConfig) -> Iterator[Database]:
    database = Database.open(pg_cfg)
    yield database
    with database.engine.begin() as conn:  # fresh rows per test, schema kept
        conn.exec_driver_sql(
            "TRUNCATE files, predictions, labels, images, evaluations, model_activations, "
            "model_versions, training_runs RESTART IDENTITY CASCADE"
        )
    database.close()


def test_migration_creates_schema_and_view_once(pg: Database, pg_cfg: StorageConfig) -> None:
    assert migrate.upgrade(pg.engine) is False
    inspector = inspect(pg.engine)
    assert "files" in inspector.get_table_names()
    assert inspector.get_view_names() == ["verdicts"]


def test_queries_and_verdicts_view(pg: Database) -> None:
    seed = Seed(pg)
    model = seed.model("v1", status="champion")
    ai, sha = seed.classified(model, label="ai", path="/in/face.jpg")
    rejected = seed.rejected()
    with pg.session() as s:
        rows = q.list_verdicts(s)
        assert [r.id for r in rows] == [rejected, ai]
        assert rows[1].created_at is not None and rows[1].created_at.tzinfo is not None
        assert [r.id for r in q.list_verdicts(s, label="ai", since=utcnow() - timedelta(1))] == [ai]
        assert set(q.predictions_for(s, [sha], model)) == {sha}
        q.set_label(s, sha, "real")
    with pg.session() as s:
        assert q.human_labels(s) == [(sha, "real", "/in/face.jpg")]


def test_promote_and_rollback(pg: Database) -> None:
    seed = Seed(pg)
    seed.model("a", status="champion")
    seed.model("b")
    with pg.session() as s:
        q.promote(s, "b", {"by": "test"})
    with pg.session() as s:
        retired, restored = q.rollback_champion(s, {"by": "test"})
        assert retired is not None and (retired.version, restored.version) == ("b", "a")


def test_claim_respects_the_limit(pg: Database) -> None:
    seed = Seed(pg)
    ids = [seed.pending() for _ in range(5)]
    with pg.session() as s:
        # A single UPDATE ... IN (SELECT ... LIMIT 3 FOR UPDATE SKIP LOCKED) claimed all 5 here.
        claimed = q.claim_files(s, worker="w", limit=3, stale_after_s=3600)
        assert [r.id for r in claimed] == ids[:3]
        assert [r.attempts for r in claimed] == [1, 1, 1]


def test_concurrent_claims_skip_locked(pg: Database) -> None:
    with pg.session() as s:
        s.add_all(
            FileRow(path=f"/in/{i}.jpg", size_bytes=1, mtime_ns=1, origin="scan") for i in range(90)
        )
    claimed: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    barrier = threading.Barrier(3)

    def worker(name: str) -> None:
        barrier.wait()
        while rows := pg.retrying(
            lambda s: q.claim_files(s, worker=name, limit=5, stale_after_s=3600)
        ):
            claimed[name] += [r.id for r in rows]

    threads = [threading.Thread(target=worker, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == len(set(everything)) == 90
    with pg.session() as s:
        assert q.release_claims(s, "a") == len(claimed["a"])
