"""File arrivals: discovery, atomic claims, final states, release, dispositions."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from storage.models import FileRow, utcnow
from tests.storage.factories import Seed


def _claim(
    db: Database,
    worker: str,
    limit: int = 10,
    stale: float = 3600,
    paths: list[str] | None = None,
) -> list[int]:
    rows = db.retrying(
        lambda s: q.claim_files(s, worker=worker, limit=limit, stale_after_s=stale, paths=paths)
    )
    return [r.id for r in rows]


def test_discover_file_once_per_arrival(db: Database) -> None:
    with db.session() as s:
        row, created = q.discover_file(s, path="/a.jpg", size_bytes=5, mtime_ns=7, origin="inbox")
        assert created and row.state == "pending" and row.attempts == 0
        same, created_again = q.discover_file(
            s, path="/a.jpg", size_bytes=5, mtime_ns=7, origin="scan"
        )
        assert not created_again and same.id == row.id and same.origin == "inbox"
        other, created_other = q.discover_file(
            s, path="/a.jpg", size_bytes=5, mtime_ns=8, origin="scan"
        )
        assert created_other and other.id != row.id
        with pytest.raises(ValueError, match="origin"):
            q.discover_file(s, path="/b", size_bytes=1, mtime_ns=1, origin="mail")


def test_claim_takes_pending_files_in_order_and_counts_attempts(db: Database, seed: Seed) -> None:
    ids = [seed.pending() for _ in range(5)]
    assert _claim(db, "w1", limit=3) == ids[:3]
    assert _claim(db, "w2", limit=3) == ids[3:]
    assert _claim(db, "w3") == []
    with db.session() as s:
        row = s.get(FileRow, ids[0])
        assert row is not None
        assert (row.state, row.claimed_by, row.attempts) == ("claimed", "w1", 1)
        assert row.claimed_at is not None and row.claimed_at.tzinfo is not None


def test_claim_only_listed_paths(db: Database, seed: Seed) -> None:
    seed.pending("/in/a.jpg")
    b = seed.pending("/in/b.jpg")
    assert _claim(db, "w", paths=["/in/b.jpg", "/in/missing.jpg"]) == [b]
    assert _claim(db, "w", paths=[]) == []


def test_stale_claims_are_reclaimed(db: Database, seed: Seed) -> None:
    file_id = seed.pending()
    assert _claim(db, "crashed") == [file_id]
    assert _claim(db, "w2", stale=60) == []  # fresh claim: left alone
    with db.session() as s:
        row = s.get(FileRow, file_id)
        assert row is not None
        row.claimed_at = utcnow() - timedelta(minutes=5)
    assert _claim(db, "w2", stale=60) == [file_id]
    with db.session() as s:
        row = s.get(FileRow, file_id)
        assert row is not None and (row.claimed_by, row.attempts) == ("w2", 2)


def test_final_states_are_never_claimed(db: Database, seed: Seed) -> None:
    model = seed.model()
    seed.classified(model)
    seed.rejected()
    assert _claim(db, "w", stale=0) == []


@pytest.mark.parametrize("immediate", [True, False])
def test_concurrent_claimers_never_share_a_file(
    storage_cfg: StorageConfig, seed: Seed, immediate: bool
) -> None:
    with seed.db.session() as s:
        s.add_all(
            FileRow(path=f"/in/{i}.jpg", size_bytes=1, mtime_ns=1, origin="scan")
            for i in range(120)
        )
    claimed: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    barrier = threading.Barrier(len(claimed))
    errors: list[BaseException] = []
    # Each its own engine and connections, like a process; opened here, one after the other:
    # opening is not under test, and a worker dying before the barrier would hang the rest.
    handles = {name: Database.open(storage_cfg) for name in claimed}

    def worker(name: str) -> None:
        own = handles[name]
        try:
            barrier.wait(timeout=60)
            while True:
                rows = own.retrying(
                    lambda s: q.claim_files(s, worker=name, limit=7, stale_after_s=3600),
                    attempts=20,
                    immediate=immediate,
                )
                if not rows:
                    return
                claimed[name] += [r.id for r in rows]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == len(set(everything)) == 120
    with seed.db.session() as s:
        rows = q.claim_files(s, worker="x", limit=500, stale_after_s=3600)
    assert rows == []


def test_release_claims_returns_only_that_workers_files(db: Database, seed: Seed) -> None:
    mine = seed.pending()
    theirs = seed.pending()
    assert _claim(db, "me", limit=1) == [mine]
    assert _claim(db, "them", limit=1) == [theirs]
    with db.session() as s:
        assert q.release_claims(s, "me") == 1
    with db.session() as s:
        row = s.get(FileRow, mine)
        assert row is not None
        assert (row.state, row.claimed_by, row.claimed_at, row.attempts) == (
            "pending",
            None,
            None,
            0,
        )
        other = s.get(FileRow, theirs)
        assert other is not None and other.state == "claimed"
    assert _claim(db, "me") == [mine]


def test_mark_classified_and_rejected(db: Database, seed: Seed) -> None:
    model = seed.model()
    done, sha = seed.classified(model)
    bad = seed.rejected("not_an_image")
    with db.session() as s:
        row = s.get(FileRow, done)
        assert row is not None
        assert (row.state, row.sha256, row.reason) == ("classified", sha, None)
        assert row.prediction_id is not None and row.screened_at is not None
        rej = s.get(FileRow, bad)
        assert rej is not None
        assert (rej.state, rej.reason_code, rej.reason) == (
            "rejected",
            "not_an_image",
            "the file is not_an_image",
        )
        with pytest.raises(q.NotFound):
            q.mark_rejected(s, 9999, code="empty", reason="empty")


def test_due_dispositions_and_record_disposition(db: Database, seed: Seed) -> None:
    model = seed.model()
    now = utcnow()
    due_now, _ = seed.classified(model)
    later, _ = seed.classified(model)
    retry_passed = seed.rejected()
    untouched, _ = seed.classified(model)
    with db.session() as s:
        q.record_disposition(s, due_now, disposition="pending")
        q.record_disposition(
            s, later, disposition="pending", next_attempt_at=now + timedelta(hours=1)
        )
        q.record_disposition(
            s,
            retry_passed,
            disposition="pending",
            reason="move failed",
            next_attempt_at=now - timedelta(seconds=1),
        )
    with db.session() as s:
        assert [r.id for r in q.due_dispositions(s, now, 10)] == [due_now, retry_passed]
        assert [r.id for r in q.due_dispositions(s, now + timedelta(hours=2), 1)] == [due_now]
        rejected = s.get(FileRow, retry_passed)
        assert rejected is not None and rejected.reason == "the file is truncated"
        moved = q.record_disposition(s, due_now, disposition="moved", dest_path="/out/ai/x.jpg")
        assert (moved.disposition, moved.dest_path, moved.next_attempt_at) == (
            "moved",
            "/out/ai/x.jpg",
            None,
        )
        failed = q.record_disposition(s, later, disposition="failed", reason="disk full")
        assert failed.reason == "disk full"
        assert untouched not in [r.id for r in q.due_dispositions(s, now, 10)]
        with pytest.raises(ValueError, match="disposition"):
            q.record_disposition(s, later, disposition="lost")


def test_mark_classified_can_set_disposition_pending(db: Database, seed: Seed) -> None:
    model = seed.model()
    first, sha = seed.classified(model)
    second = seed.pending()
    with db.session() as s:
        first_row = s.get(FileRow, first)
        assert first_row is not None and first_row.prediction_id is not None
        q.mark_classified(
            s, second, sha256=sha, prediction_id=first_row.prediction_id, disposition="pending"
        )
    with db.session() as s:
        assert [r.id for r in q.due_dispositions(s, utcnow(), 10)] == [second]


def test_files_may_come_from_the_api(db: Database) -> None:
    # Revision 0005 widened the origin constraint; anything else is still refused.
    with db.session() as s:
        row, created = q.discover_file(
            s, path="/var/uploads/ab.jpg", size_bytes=3, mtime_ns=1, origin="api"
        )
        assert created and row.origin == "api"
    with pytest.raises(Exception), db.session() as s:  # noqa: B017 (CHECK violation)
        q.discover_file(s, path="/x.jpg", size_bytes=1, mtime_ns=1, origin="ftp")
