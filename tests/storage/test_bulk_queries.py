"""Set-based writes of the daemon's writer: the one-row functions' effects, fewer statements.

Every test runs on SQLite and on PostgreSQL (tests/storage/conftest.py).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from storage.models import FileRow, Image, Prediction, utcnow
from storage.queries import _common
from tests.storage.factories import Seed

SHA_A = "a" * 64
SHA_B = "b" * 64


def _arrival(path: str, mtime_ns: int = 1, origin: str = "inbox") -> q.FileArrival:
    return q.FileArrival(path, 100, mtime_ns, origin)


def _verdict(file_id: int, sha256: str, model_id: int, **changes: Any) -> q.ClassifiedFile:
    values: dict[str, Any] = {
        "file_id": file_id,
        "sha256": sha256,
        "size_bytes": 100,
        "width": 64,
        "height": 48,
        "format": "JPEG",
        "model_version_id": model_id,
        "score": 0.9,
        "label": "ai",
        "decode_ms": 1.5,
        "infer_ms": 2.5,
        "disposition": "pending",
    }
    return q.ClassifiedFile(**(values | changes))


def _file(db: Database, file_id: int) -> FileRow:
    with db.session() as s:
        row = s.get(FileRow, file_id)
        assert row is not None
        return row


# --- discover_files ------------------------------------------------------------------------


def test_discover_files_creates_each_arrival_once_in_order(db: Database) -> None:
    with db.session() as s:
        found = q.discover_files(
            s, [_arrival("/in/a.jpg"), _arrival("/in/b.jpg"), _arrival("/in/a.jpg", origin="scan")]
        )
    (a, a_new), (b, b_new), (a_again, a_again_new) = found
    assert (a_new, b_new, a_again_new) == (True, True, False)
    assert a_again.id == a.id and a.origin == "inbox"  # the first listing wins
    assert (a.state, a.attempts, b.path) == ("pending", 0, "/in/b.jpg")
    assert a.discovered_at.tzinfo is not None


def test_discover_files_returns_rows_already_present_unchanged(db: Database, seed: Seed) -> None:
    model = seed.model()
    done, _ = seed.classified(model, path="/in/done.jpg")
    with db.session() as s:
        found = q.discover_files(
            s,
            [
                q.FileArrival("/in/done.jpg", 100, 1, "scan"),
                q.FileArrival("/in/done.jpg", 100, 2, "scan"),  # same path, new mtime: new arrival
            ],
        )
    (old, old_new), (other, other_new) = found
    assert (old.id, old.state, old.origin, old_new) == (done, "classified", "inbox", False)
    assert other_new and other.id != done


def test_discover_files_checks_origins_and_accepts_nothing(db: Database) -> None:
    with db.session() as s:
        assert q.discover_files(s, []) == []
        with pytest.raises(ValueError, match="origin"):
            q.discover_files(s, [_arrival("/in/a.jpg"), _arrival("/in/b.jpg", origin="mail")])


def test_discover_files_more_than_one_chunk(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_CHUNK", 3)
    arrivals = [_arrival(f"/in/{i}.jpg") for i in range(10)]
    with db.session() as s:
        first = q.discover_files(s, arrivals)
    with db.session() as s:
        second = q.discover_files(s, arrivals)
    assert [created for _, created in first] == [True] * 10
    assert [created for _, created in second] == [False] * 10
    assert [row.id for row, _ in first] == [row.id for row, _ in second]


def test_concurrent_discovery_of_the_same_files_creates_each_once(
    storage_cfg: StorageConfig, db: Database
) -> None:
    """Two writers (own connections) racing over overlapping lists: every key created once."""
    arrivals = [_arrival(f"/in/{i}.jpg") for i in range(200)]
    created: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(index: int, items: list[q.FileArrival]) -> None:
        try:
            with Database.open(storage_cfg, migrate_schema=False) as other:
                start.wait(timeout=60)
                for at in range(0, len(items), 20):
                    chunk = items[at : at + 20]
                    found = other.retrying(lambda s, chunk=chunk: q.discover_files(s, chunk))
                    created[index] += [row.id for row, new in found if new]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            start.abort()  # the other writer must not wait for this one forever

    threads = [
        threading.Thread(target=writer, args=(0, arrivals)),
        threading.Thread(target=writer, args=(1, arrivals[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.session() as s:
        ids = s.scalars(select(FileRow.id)).all()
    assert len(ids) == 200 and sorted(created[0] + created[1]) == sorted(ids)


# --- store_classified ----------------------------------------------------------------------


def test_same_content_in_two_files_of_one_batch_shares_image_and_prediction(
    db: Database, seed: Seed
) -> None:
    model = seed.model()
    first, second, other = seed.pending(), seed.pending(), seed.pending()
    with db.session() as s:
        screened_at = q.store_classified(
            s,
            [
                _verdict(first, SHA_A, model, score=0.8),
                _verdict(second, SHA_A, model, score=0.1, label="real"),
                _verdict(other, SHA_B, model, disposition="kept"),
            ],
        )
    with db.session() as s:
        images = s.scalars(select(Image).order_by(Image.sha256)).all()
        predictions = s.scalars(select(Prediction).order_by(Prediction.id)).all()
        assert [(i.sha256, i.width, i.height, i.format) for i in images] == [
            (SHA_A, 64, 48, "JPEG"),
            (SHA_B, 64, 48, "JPEG"),
        ]
        assert [(p.score, p.label) for p in predictions] == [(0.8, "ai"), (0.9, "ai")]
    rows = [_file(db, file_id) for file_id in (first, second, other)]
    assert [r.state for r in rows] == ["classified"] * 3
    assert rows[0].prediction_id == rows[1].prediction_id != rows[2].prediction_id
    assert [r.disposition for r in rows] == ["pending", "pending", "kept"]
    assert all(r.screened_at == screened_at and r.reason is None for r in rows)


def test_known_image_and_prediction_are_reused_and_details_filled_in(
    db: Database, seed: Seed
) -> None:
    model = seed.model()
    earlier, sha = seed.classified(model, score=0.3, label="real")
    with db.session() as s:
        bare = q.upsert_image(s, SHA_B, 100)  # e.g. labelled before its header was read
        bare_id = bare.id
    again, fresh = seed.pending(), seed.pending()
    with db.session() as s:
        q.store_classified(
            s,
            [
                _verdict(again, sha, model, score=0.99, width=None, height=None, format=None),
                _verdict(fresh, SHA_B, model, width=10, height=20, format="PNG"),
            ],
        )
    with db.session() as s:
        reused = s.scalars(
            select(Prediction).where(Prediction.id == _file(db, earlier).prediction_id)
        )
        assert [(p.score, p.label) for p in reused] == [(0.3, "real")]
        filled = s.get(Image, bare_id)
        assert filled is not None and (filled.width, filled.height, filled.format) == (
            10,
            20,
            "PNG",
        )
        kept = s.scalars(select(Image).where(Image.sha256 == sha)).one()
        assert (kept.width, kept.height, kept.format) == (64, 64, "JPEG")  # unknown: unchanged
    assert _file(db, again).prediction_id == _file(db, earlier).prediction_id
    assert _file(db, fresh).prediction_id is not None


def test_later_sighting_in_a_batch_fills_in_missing_details(db: Database, seed: Seed) -> None:
    model = seed.model()
    first, second = seed.pending(), seed.pending()
    with db.session() as s:
        q.store_classified(
            s,
            [
                _verdict(first, SHA_A, model, width=None, height=None, format=None),
                _verdict(second, SHA_A, model, width=7, height=None, format="PNG"),
            ],
        )
    with db.session() as s:
        image = s.scalars(select(Image)).one()
        assert (image.width, image.height, image.format) == (7, None, "PNG")


def test_store_classified_keeps_disposition_when_none_and_rejects_bad_input(
    db: Database, seed: Seed
) -> None:
    model = seed.model()
    file_id = seed.pending()
    with db.session() as s:
        q.record_disposition(s, file_id, disposition="kept")
        q.store_classified(s, [_verdict(file_id, SHA_A, model, disposition=None)])
    assert _file(db, file_id).disposition == "kept"
    with pytest.raises(ValueError, match="label"), db.session() as s:
        q.store_classified(s, [_verdict(file_id, SHA_B, model, label="maybe")])
    with pytest.raises(StaleDataError), db.session() as s:
        q.store_classified(s, [_verdict(9999, SHA_B, model)])
    with db.session() as s:  # both failures rolled back
        assert s.scalars(select(Image.sha256)).all() == [SHA_A]


# --- record_dispositions -------------------------------------------------------------------


def test_record_dispositions_matches_record_disposition(db: Database, seed: Seed) -> None:
    model = seed.model()
    moved, _ = seed.classified(model)
    retry, _ = seed.classified(model)
    rejected = seed.rejected("truncated")
    later = utcnow() + timedelta(minutes=5)
    with db.session() as s:
        q.record_dispositions(
            s,
            [
                q.DispositionUpdate(moved, "moved", dest_path="/out/ai/x.jpg"),
                q.DispositionUpdate(
                    retry, "pending", reason="move failed: busy", next_attempt_at=later
                ),
                q.DispositionUpdate(rejected, "failed", reason="disk full"),
            ],
        )
    a, b, c = (_file(db, i) for i in (moved, retry, rejected))
    assert (a.disposition, a.dest_path, a.next_attempt_at) == ("moved", "/out/ai/x.jpg", None)
    assert (b.disposition, b.reason, b.next_attempt_at) == ("pending", "move failed: busy", later)
    assert (c.disposition, c.reason) == ("failed", "the file is truncated")  # keeps its reason
    with db.session() as s:
        assert [r.id for r in q.due_dispositions(s, later, 10)] == [retry]
        assert q.due_dispositions(s, later - timedelta(seconds=1), 10) == []


def test_record_dispositions_refuses_unknown_files_and_values(db: Database, seed: Seed) -> None:
    file_id = seed.rejected()
    with db.session() as s:
        q.record_dispositions(s, [])
        with pytest.raises(ValueError, match="disposition"):
            q.record_dispositions(s, [q.DispositionUpdate(file_id, "lost")])
    with pytest.raises(q.NotFound), db.session() as s:
        q.record_dispositions(
            s, [q.DispositionUpdate(file_id, "moved"), q.DispositionUpdate(9999, "moved")]
        )
    assert _file(db, file_id).disposition is None  # rolled back with the failure


# --- portability ---------------------------------------------------------------------------


def _session_on(dialect: Any) -> Session:
    """Just enough of a Session for _insert_skipping_existing to read the dialect."""
    bind = SimpleNamespace(dialect=dialect)
    return SimpleNamespace(get_bind=lambda: bind)  # type: ignore[return-value]


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
def test_insert_skips_conflicts_on_postgresql_and_sqlite(dialect: Any) -> None:
    s = _session_on(dialect)
    for model, key in (
        (Image, "(sha256)"),
        (Prediction, "(image_id, model_version_id)"),
        (FileRow, "(path, size_bytes, mtime_ns)"),
    ):
        stmt = _common._insert_skipping_existing(s, model, key.strip("()").split(", "))
        sql = str(stmt.returning(model.id).compile(dialect=dialect))
        assert f"ON CONFLICT {key} DO NOTHING RETURNING" in sql


def test_insert_refuses_a_dialect_without_on_conflict() -> None:
    with pytest.raises(NotImplementedError, match="mysql"):
        mysql = _session_on(SimpleNamespace(name="mysql"))
        _common._insert_skipping_existing(mysql, Image, ["sha256"])
