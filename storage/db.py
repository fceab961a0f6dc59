"""The database handle: engine, SQLite tuning, private files, migrations, sessions, retries."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import tenacity
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from storage import migrate
from storage.config import StorageConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Substrings of driver messages (SQLite, PostgreSQL) that mean "someone else holds the lock,
# try again", as opposed to a real error that retrying cannot fix.
_RETRYABLE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "deadlock detected",
    "could not serialize access",
    "could not obtain lock",
)
# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, lock_not_available.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE"})


def is_retryable(exc: OperationalError) -> bool:
    """True when `exc` is a lock or serialization conflict worth retrying."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _RETRYABLE_SQLSTATES:
        return True
    message = str(orig if orig is not None else exc).lower()
    return any(text in message for text in _RETRYABLE_MESSAGES)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _ensure_private_file(path: Path, private: bool) -> None:
    """Create the folder and the empty database file before SQLite does, private if asked.

    SQLite creates a new file with the process umask (often world-readable) and copies the
    database file's mode onto -wal/-shm, so creating it 0600 first keeps all three private.
    """
    folder = path.parent
    if not folder.exists():
        try:
            folder.mkdir(parents=True, mode=0o700 if private else 0o777)
        except FileExistsError:
            pass  # another process starting at the same moment made it
        else:
            if private:
                folder.chmod(0o700)  # mkdir's mode is filtered by the umask
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600 if private else 0o666)
    os.close(fd)
    if private:
        _chmod_private(path)


def _chmod_private(path: Path) -> None:
    """0600 on the database file and its -wal/-shm companions, where they exist."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if stat.S_IMODE(candidate.stat().st_mode) != 0o600:
                candidate.chmod(0o600)
        except FileNotFoundError:
            continue


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL (persistent), waiting out other connections doing the same.

    Changing the journal mode needs an exclusive lock and SQLite reports "locked" at once
    instead of calling the busy handler, so two processes creating the database together
    would otherwise crash one of them.
    """
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
        ),
        stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_random(0.005, 0.02),
        reraise=True,
    ):
        with attempt:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")


def _jittered_backoff(base: float, most: float) -> Callable[[tenacity.RetryCallState], float]:
    """base * 2^(n-1) seconds, capped at `most`, times a random 0.5-1.5: competing writers
    spread out instead of colliding again."""

    def wait(state: tenacity.RetryCallState) -> float:
        delay = min(most, base * 2 ** (state.attempt_number - 1))
        return delay * random.uniform(0.5, 1.5)

    return wait


def _log_busy(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    stop = state.retry_object.stop
    attempts = getattr(stop, "max_attempt_number", 0)
    logger.warning(
        "database busy (%s); retry %d/%d in %.2f s",
        getattr(exc, "orig", exc),
        state.attempt_number,
        attempts - 1,
        delay,
    )


def _install_sqlite_hooks(engine: Engine, cfg: StorageConfig, path: Path | None) -> None:
    """Pragmas on every new connection, and BEGIN emitted by us (see _begin)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy: the sqlite3 module's legacy mode skips BEGIN
        # before SELECT and SAVEPOINT, which breaks savepoints and repeatable reads.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {int(cfg.busy_timeout_ms)}")
            if path is not None:
                _enable_wal(cursor, cfg.busy_timeout_ms / 1000)
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()
        if path is not None and cfg.private:
            _chmod_private(path)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction waits
        # (busy_timeout) instead of failing with SQLITE_BUSY when its snapshot went stale.
        mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
        conn.exec_driver_sql(f"BEGIN {mode if mode in _BEGIN_MODES else 'DEFERRED'}")


def _plain(value: Any) -> Any:
    """Non-finite floats -> None, recursively (PostgreSQL's JSON type rejects NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (metrics often hold them) as plain Python values."""
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: Any) -> str:
    """The serializer of JSON columns: portable JSON, never NaN or Infinity."""
    return json.dumps(_plain(value), default=_json_default, allow_nan=False)


def create_db_engine(cfg: StorageConfig) -> Engine:
    """An engine for cfg.url; SQLite gets its file prepared and its pragmas set."""
    path = sqlite_path(cfg.url)
    if path is not None:
        _ensure_private_file(path, cfg.private)
    is_sqlite = make_url(cfg.url).get_backend_name() == "sqlite"
    connect_args = {"timeout": cfg.busy_timeout_ms / 1000} if is_sqlite else {}
    engine = create_engine(
        cfg.url,
        connect_args=connect_args,
        pool_pre_ping=not is_sqlite,
        json_serializer=json_dumps,
    )
    if is_sqlite:
        _install_sqlite_hooks(engine, cfg, path)
    return engine


class Database:
    """An open database: engine, transactions (`session`, `retrying`) and `close`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            bind=engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )

    @classmethod
    def open(cls, cfg: StorageConfig, *, migrate_schema: bool = True) -> Database:
        """Connect to cfg.url and migrate the schema to head."""
        engine = create_db_engine(cfg)
        try:
            if migrate_schema:
                migrate.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        logger.debug("database open: %s", engine.url.render_as_string(hide_password=True))
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine."""
        return self._engine

    @contextmanager
    def session(self, *, immediate: bool = False) -> Iterator[Session]:
        """A session inside a transaction: commit on exit, rollback on error.

        immediate=True takes SQLite's write lock at BEGIN (no effect on other databases).
        """
        maker = self._write_sessions if immediate else self._sessions
        with maker.begin() as session:
            yield session

    def retrying(
        self,
        fn: Callable[[Session], T],
        attempts: int = 8,
        *,
        immediate: bool = True,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
    ) -> T:
        """Run fn in a fresh transaction, retrying lock/busy errors with backoff and jitter.

        fn may run several times, so it must do nothing outside the session it is given.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, OperationalError) and is_retryable(e)
            ),
            stop=tenacity.stop_after_attempt(attempts),
            wait=_jittered_backoff(base_delay, max_delay),
            before_sleep=_log_busy,
            reraise=True,
        ):
            with attempt, self.session(immediate=immediate) as session:
                return fn(session)
        raise AssertionError("unreachable")  # Retrying returns or raises

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
