"""Database: pragmas, private files, UTC datetimes, constraints, and retrying() under locks."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database, sqlite_path
from storage.models import FileRow, ModelVersion, Prediction, TrainingRun
from tests.storage.factories import Seed


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.sqlite_only
def test_pragmas_are_in_effect_on_every_connection(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2_000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_private_database_files_and_folder(db: Database, db_path: Path, seed: Seed) -> None:
    old = os.umask(0o022)  # a typical umask would make new files world-readable
    try:
        seed.pending()
        with db.engine.connect() as conn:  # a fresh connection re-checks -wal/-shm
            conn.exec_driver_sql("SELECT 1")
    finally:
        os.umask(old)
    assert _mode(db_path.parent) == 0o700
    for name in (db_path.name, db_path.name + "-wal", db_path.name + "-shm"):
        assert _mode(db_path.with_name(name)) == 0o600, name


def test_not_private_leaves_the_umask_alone(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "db.sqlite"
    old = os.umask(0o022)
    try:
        Database.open(StorageConfig(url=f"sqlite:///{path}", private=False)).close()
    finally:
        os.umask(old)
    assert _mode(path) == 0o644


def test_sqlite_path_only_for_sqlite_files(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u@localhost/db") is None


def test_session_commits_on_exit_and_rolls_back_on_error(db: Database) -> None:
    with db.session() as s:
        q.start_training_run(s, {"a": 1})
    with pytest.raises(RuntimeError), db.session() as s:
        q.start_training_run(s, {"a": 2})
        raise RuntimeError("boom")
    with db.session() as s:
        configs = [r.config for r in s.scalars(select(TrainingRun))]
    assert configs == [{"a": 1}]


def test_datetimes_are_stored_utc_and_returned_aware(db: Database, db_path: Path) -> None:
    local = datetime(2025, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as s:
        row = FileRow(path="/x", size_bytes=1, mtime_ns=1, origin="scan", discovered_at=local)
        s.add(row)
    with db.session() as s:
        back = s.scalars(select(FileRow)).one().discovered_at
    assert back == local
    assert back.tzinfo == UTC and back.hour == 12
    with sqlite3.connect(db_path) as con:
        raw = con.execute("SELECT discovered_at FROM files").fetchone()[0]
    assert raw.startswith("2025-06-01 12:30:00")


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Prediction(image_id=999, model_version_id=999, score=0.5, label="ai"))


def test_check_constraints_reject_unknown_enum_values(db: Database) -> None:
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(FileRow(path="/x", size_bytes=1, mtime_ns=1, origin="scan", state="bogus"))
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(FileRow(path="/x", size_bytes=1, mtime_ns=1, origin="email"))


def test_file_arrival_is_unique_by_path_size_and_mtime(db: Database) -> None:
    with db.session() as s:
        s.add(FileRow(path="/x", size_bytes=1, mtime_ns=1, origin="scan"))
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(FileRow(path="/x", size_bytes=1, mtime_ns=1, origin="inbox"))
    with db.session() as s:  # a rewrite of the same path is a new arrival
        s.add(FileRow(path="/x", size_bytes=1, mtime_ns=2, origin="inbox"))


def test_at_most_one_champion(db: Database, seed: Seed) -> None:
    seed.model("a", status="champion")
    seed.model("b")
    with pytest.raises(IntegrityError), db.session() as s:
        s.scalars(select(ModelVersion).where(ModelVersion.version == "b")).one().status = "champion"


def _hold_write_lock(db_path: Path, seconds: float) -> threading.Thread:
    """Another connection takes the write lock, writes one row, and commits after `seconds`."""
    locked = threading.Event()

    def hold() -> None:
        con = sqlite3.connect(db_path, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                "INSERT INTO training_runs (started_at, status, config) "
                "VALUES ('2025-01-01 00:00:00.000000', 'running', '{\"by\": \"locker\"}')"
            )
            locked.set()
            time.sleep(seconds)  # the lock must outlive several retries
            con.execute("COMMIT")
        finally:
            con.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(5)
    return thread


def test_retrying_outlasts_a_write_lock_and_loses_no_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "db.sqlite"
    db = Database.open(StorageConfig(url=f"sqlite:///{path}", busy_timeout_ms=50))
    caplog.set_level(logging.WARNING, logger="storage.db")
    writers_done: list[int] = []

    def writer(n: int) -> None:
        for i in range(3):
            config = {"writer": n, "i": i}
            db.retrying(lambda s: q.start_training_run(s, config))  # noqa: B023 (called at once)
        writers_done.append(n)

    started = time.monotonic()
    locker = _hold_write_lock(path, 1.0)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in [*threads, locker]:
        t.join()
    try:
        assert time.monotonic() - started >= 0.9
        assert sorted(writers_done) == [0, 1, 2]
        assert any("retry" in r.getMessage() for r in caplog.records)
        with db.session() as s:
            configs = [r.config for r in s.scalars(select(TrainingRun))]
        assert len(configs) == 10
        assert {"by": "locker"} in configs
    finally:
        db.close()


def test_retrying_gives_up_after_the_last_attempt(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = Database.open(StorageConfig(url=f"sqlite:///{path}", busy_timeout_ms=10))
    calls: list[int] = []

    def read(s: Session) -> None:
        s.execute(text("SELECT count(*) FROM files"))  # BEGIN IMMEDIATE comes first, and fails
        calls.append(1)

    locker = _hold_write_lock(path, 0.5)
    try:
        with pytest.raises(OperationalError, match="locked"):
            db.retrying(read, attempts=2, base_delay=0.01)
    finally:
        locker.join()
        db.close()
    assert calls == []


def test_retrying_does_not_retry_real_errors(db: Database) -> None:
    calls: list[int] = []

    def broken(s: Session) -> None:
        calls.append(1)
        s.execute(text("SELECT * FROM no_such_table"))

    # SQLite: OperationalError "no such table"; PostgreSQL: ProgrammingError "does not exist".
    with pytest.raises(DBAPIError, match=r"no such table|does not exist"):
        db.retrying(broken)
    assert calls == [1]


def test_retrying_returns_what_fn_returns(db: Database) -> None:
    run_id = db.retrying(lambda s: q.start_training_run(s, {}))
    with db.session() as s:
        assert s.get(TrainingRun, run_id) is not None


def test_json_columns_store_numpy_values_and_no_nan(db: Database) -> None:
    np = pytest.importorskip("numpy")
    metrics = {
        "roc_auc": float("nan"),
        "accuracy": np.float32(0.5),
        "confusion": np.array([[1, 2], [3, 4]]),
        "per_source": {"x": [np.int64(3), float("inf")]},
    }
    with db.session() as s:
        run_id = q.start_training_run(s, metrics)
    with db.session() as s:
        run = s.get(TrainingRun, run_id)
        assert run is not None
        assert run.config == {
            "roc_auc": None,
            "accuracy": 0.5,
            "confusion": [[1, 2], [3, 4]],
            "per_source": {"x": [3, None]},
        }
