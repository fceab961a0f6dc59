"""Reading results the way a user would: the `verdicts` view, through the sqlite3 module."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.procs import BenchmarkError

logger = logging.getLogger(__name__)

COLUMNS = "path, status, created_at, discovered_at, decode_ms, infer_ms, disposition, faces"


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """The columns of one `verdicts` row the benchmarks use (times as epoch seconds)."""

    path: str
    status: str
    created_at: float
    discovered_at: float
    decode_ms: float | None
    infer_ms: float | None
    disposition: str | None
    faces: int | None = None  # faces found (each one more view through the model)


def epoch(text: str | None) -> float:
    """Epoch seconds of a stored timestamp (SQLite keeps naive UTC text)."""
    if not text:
        return float("nan")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def connect(db: Path) -> sqlite3.Connection:
    """A read-only autocommit connection (each query sees the newest committed rows)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _row(raw: tuple[object, ...]) -> VerdictRow:
    path, status, created, discovered, decode_ms, infer_ms, disposition, faces = raw
    return VerdictRow(
        path=str(path),
        status=str(status),
        created_at=epoch(str(created) if created else None),
        discovered_at=epoch(str(discovered) if discovered else None),
        decode_ms=float(decode_ms) if isinstance(decode_ms, int | float) else None,
        infer_ms=float(infer_ms) if isinstance(infer_ms, int | float) else None,
        disposition=str(disposition) if disposition is not None else None,
        faces=int(faces) if isinstance(faces, int) else None,
    )


def all_verdicts(db: Path) -> list[VerdictRow]:
    """Every row of the view."""
    conn = connect(db)
    try:
        return [_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM verdicts")]
    finally:
        conn.close()


class VerdictPoller:
    """Polls the view for one path (or any row) until it is visible; tolerates a DB not yet made."""

    def __init__(self, db: Path, interval_s: float = 0.005) -> None:
        self._db = db
        self._interval_s = interval_s
        self._conn: sqlite3.Connection | None = None

    def _query(self, path: str | None) -> VerdictRow | None:
        try:
            if self._conn is None:
                self._conn = connect(self._db)
            sql = f"SELECT {COLUMNS} FROM verdicts"
            cur = (
                self._conn.execute(sql + " WHERE path = ?", (path,))
                if path is not None
                else self._conn.execute(sql + " LIMIT 1")
            )
            raw = cur.fetchone()
        except sqlite3.OperationalError:  # no file or no schema yet: the daemon is starting
            self.close()
            return None
        return _row(raw) if raw is not None else None

    def wait_for(self, path: str | None, timeout_s: float) -> tuple[VerdictRow, float]:
        """The row for `path` (None: the first row) and the perf_counter time it became visible."""
        deadline = time.perf_counter() + timeout_s
        while True:
            row = self._query(path)
            now = time.perf_counter()
            if row is not None:
                return row, now
            if now > deadline:
                raise BenchmarkError(f"no verdict for {path or 'any file'} within {timeout_s} s")
            time.sleep(self._interval_s)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
