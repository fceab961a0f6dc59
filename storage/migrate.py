"""Alembic, configured in code: no alembic.ini is needed at runtime.

`upgrade(engine)` brings a database to head; Database.open calls it. Developers generate new
revisions with `python -m storage.migrate -x url=sqlite:///var/dev.db revision --autogenerate -m
"what changed"` (any alembic sub-command works the same way).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import CommandLine, Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant: the key of the PostgreSQL advisory lock that serialises migrations.
_PG_LOCK_KEY = 0x64666474


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing into this package; `connection` is used as is when given."""
    # stdout looked up now, not at import: alembic's default would ignore later redirection.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None when it was never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> bool:
    """Migrate to head; safe when several processes start at once. True if anything ran."""
    head = head_revision()
    with engine.connect() as conn:
        # Cheap common case first: an up-to-date database takes no write lock at all.
        if current_revision(conn) == head:
            return False
    with engine.connect() as conn:
        # BEGIN IMMEDIATE (SQLite) / an advisory lock (PostgreSQL): the second process waits,
        # then finds the schema at head and does nothing, instead of creating tables twice.
        conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            before = current_revision(conn)
            if before == head:
                return False
            logger.info("migrating database from %s to %s", before or "empty", head)
            command.upgrade(alembic_config(conn), "head")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """The alembic command line, with this package's migrations and no alembic.ini."""
    cli = CommandLine(prog="python -m storage.migrate")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cfg = alembic_config()
    cfg.cmd_opts = options
    cli.run_cmd(cfg, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
