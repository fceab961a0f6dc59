"""Alembic, configured in code: no alembic.ini is needed at runtime.

`upgrade(engine)` brings a database to head; Database.open calls it. Developers generate new
revisions with `python -m storage.migrate -x url=sqlite:///var/dev.db revision --autogenerate -m
"what changed"` (any alembic sub-command works the same way).

Alembic itself is imported only when a database is not at head (or the shipped head cannot be
read cheaply): importing it costs 0.15-0.3 s of a 1 s `scan` of one image, and a database that
is already up to date needs nothing from it but the revision id.
"""

from __future__ import annotations

import ast
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
# Arbitrary constant: the key of the PostgreSQL advisory lock that serialises migrations.
_PG_LOCK_KEY = 0x64666474
_IMPORT_LOCK = threading.Lock()


def _import_alembic() -> None:
    """Import alembic's modules once, one thread at a time.

    They are imported lazily (a `scan` on an up-to-date database never needs them). Threads
    importing a package with circular imports at the same moment can deadlock on Python's
    per-module import locks; Python breaks such a deadlock by handing one thread the
    partially initialised module, whose import then fails ("cannot import name ...").
    Several daemons' threads opening a new database at once did exactly that, rarely.
    """
    with _IMPORT_LOCK:
        import alembic.command
        import alembic.config
        import alembic.runtime.migration
        import alembic.script  # noqa: F401


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing into this package; `connection` is used as is when given."""
    from alembic.config import Config

    # stdout looked up now, not at import: alembic's default would ignore later redirection.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None when it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _literal(node: ast.stmt, name: str) -> tuple[bool, object]:
    """(True, value) when `node` is a module-level `name = <literal>` (annotated or not)."""
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        targets, value = [node.target], node.value
    elif isinstance(node, ast.Assign):
        targets, value = [t for t in node.targets if isinstance(t, ast.Name)], node.value
    else:
        return False, None
    if value is None or not any(t.id == name for t in targets):
        return False, None
    try:
        return True, ast.literal_eval(value)
    except ValueError:
        return False, None


def _revision_ids(script: Path) -> tuple[str, tuple[str, ...]] | None:
    """(revision, down revisions) of one migration file; None when they are not plain literals."""
    found: dict[str, object] = {}
    for node in ast.parse(script.read_bytes(), filename=str(script)).body:
        for name in ("revision", "down_revision"):
            ok, value = _literal(node, name)
            if ok:
                found[name] = value
    revision, down = found.get("revision"), found.get("down_revision", ...)
    if not isinstance(revision, str) or down is ...:
        return None
    downs = () if down is None else (down,) if isinstance(down, str) else down
    if not isinstance(downs, tuple | list) or not all(isinstance(d, str) for d in downs):
        return None
    return revision, tuple(downs)


def shipped_head(versions: Path | None = None) -> str | None:
    """The single head revision of the migration files, read without importing alembic.

    None whenever this cheap reading is not certain (no files, a file it cannot parse, several
    heads); callers then ask alembic itself, so a wrong answer here can only cost time.
    """
    folder = versions if versions is not None else MIGRATIONS_DIR / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        scripts = sorted(folder.glob("*.py"))
        for script in scripts:
            ids = _revision_ids(script)
            if ids is None:
                return None
            revisions.add(ids[0])
            parents.update(ids[1])
    except (OSError, SyntaxError, ValueError):
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def stamped_revisions(connection: Connection) -> set[str]:
    """The revisions recorded in the database's version table (empty when it has none)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return {str(row[0]) for row in rows}


def at_head(engine: Engine) -> bool:
    """True when the database is certainly at the shipped head, found without alembic."""
    head = shipped_head()
    if head is None:
        return False
    with engine.connect() as conn:
        return stamped_revisions(conn) == {head}


def upgrade(engine: Engine) -> bool:
    """Migrate to head; safe when several processes start at once. True if anything ran."""
    # Cheap common case first: an up-to-date database takes no write lock and imports no
    # alembic. Anything else (behind, empty, unknown) goes the authoritative way below.
    if at_head(engine):
        return False
    _import_alembic()
    from alembic import command

    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return False  # at head after all (the cheap reading was unsure): no write lock
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
    from alembic.config import CommandLine

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
