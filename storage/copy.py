"""Copy a whole database into an empty one (`deepfake-detector db copy --to URL`).

For moving from the embedded SQLite default to PostgreSQL with the history kept. Generic over
the schema: every table of `storage.models.Base.metadata`, parents before children (foreign
key order), in chunks, ids kept as they are. The target is migrated to head first and must
be empty; the copy is one transaction there, so a failed copy leaves it empty. PostgreSQL
sequences are then moved past the copied ids, and every table's row count is compared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Integer, Table, func, make_url, select, text

from storage.config import StorageConfig
from storage.db import Database
from storage.models import Base

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 2_000


class CopyError(RuntimeError):
    """The copy was refused (target not empty, same database) or did not verify."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    """Rows per table in the source and in the target after the copy, and the time taken."""

    counts: dict[str, tuple[int, int]]  # table: (source rows, target rows)
    seconds: float

    @property
    def total(self) -> int:
        """Rows copied, all tables together."""
        return sum(target for _, target in self.counts.values())


def tables() -> list[Table]:
    """Every table of the schema, parents before the tables that refer to them."""
    return list(Base.metadata.sorted_tables)


def copy_database(
    source: StorageConfig,
    target: StorageConfig,
    *,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[str, int], None] | None = None,
) -> CopyResult:
    """Copy every row of `source` into the empty database `target` (both migrated to head)."""
    if _same(source.url, target.url):
        raise CopyError("the source and the target are the same database")
    started = time.monotonic()
    with Database.open(source) as src, Database.open(target) as dst:
        counts = _copy_all(src, dst, chunk, progress)
    return CopyResult(counts, time.monotonic() - started)


def _copy_all(
    src: Database, dst: Database, chunk: int, progress: Callable[[str, int], None] | None
) -> dict[str, tuple[int, int]]:
    # One read transaction on the source: a consistent snapshot even while a daemon runs.
    with src.engine.connect() as read, read.begin(), dst.engine.begin() as write:
        _require_empty(write)
        for table in tables():
            copied = _copy_table(read, write, table, chunk)
            if progress is not None:
                progress(table.name, copied)
        _reset_sequences(write)
        counts = {t.name: (_count(read, t), _count(write, t)) for t in tables()}
        wrong = {name: pair for name, pair in counts.items() if pair[0] != pair[1]}
        if wrong:
            raise CopyError(f"row counts differ after the copy (source, target): {wrong}")
    return counts


def _same(a: str, b: str) -> bool:
    return make_url(a).render_as_string(hide_password=False) == make_url(b).render_as_string(
        hide_password=False
    )


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _require_empty(conn: Connection) -> None:
    """Refuse a target that holds any row: merging two histories would clash on ids."""
    filled = [t.name for t in tables() if conn.execute(select(t).limit(1)).first() is not None]
    if filled:
        raise CopyError(f"the target database is not empty (rows in: {', '.join(filled)})")


def _copy_table(read: Connection, write: Connection, table: Table, chunk: int) -> int:
    """Copy one table in primary-key order, `chunk` rows per INSERT; returns the rows copied."""
    stmt = select(table).order_by(*table.primary_key.columns)
    result = read.execution_options(yield_per=chunk).execute(stmt)
    copied = 0
    for rows in result.partitions(chunk):
        write.execute(table.insert(), [dict(row._mapping) for row in rows])
        copied += len(rows)
    logger.info("copied %d rows of %s", copied, table.name)
    return copied


def _reset_sequences(conn: Connection) -> None:
    """PostgreSQL: move each id sequence past the largest copied id (inserts kept the ids)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables():
        for column in table.primary_key.columns:
            if column.autoincrement is False or not isinstance(column.type, Integer):
                continue
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence(:table, :column), "
                    f'coalesce(max("{column.name}"), 0) + 1, false) FROM "{table.name}"'
                ).bindparams(table=table.name, column=column.name)
            )
