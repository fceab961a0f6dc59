"""What only PostgreSQL does: SKIP LOCKED claims, the advisory-locked migration, pg_views.

The rest of tests/storage runs on PostgreSQL as well as SQLite (tests/conftest.py); these use
the PostgreSQL database of the test run directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect

from storage import migrate
from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from storage.models import FileRow
from tests.storage.factories import Seed


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    """The test's own PostgreSQL database, open."""
    with Database.open(StorageConfig(url=pg_url)) as database:
        yield database


def test_migration_creates_schema_and_view_once(pg: Database) -> None:
    assert migrate.upgrade(pg.engine) is False
    inspector = inspect(pg.engine)
    assert "files" in inspector.get_table_names()
    assert inspector.get_view_names() == ["verdicts"]


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
