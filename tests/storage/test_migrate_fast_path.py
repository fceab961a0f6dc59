"""The migration check without alembic: the shipped head read from the files, both paths."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from storage import migrate
from storage.config import StorageConfig
from storage.db import Database

# A revision after whatever head ships, to put a database one revision behind.
EXTRA_REVISION = '''"""Add a table, to put a database one revision behind.

Revision ID: 9999
Revises: {head}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    op.create_table("extra", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("extra")
'''


def _write(folder: Path, name: str, revision: str, down: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(
        f"revision: str = {revision}\ndown_revision: str | None = {down}\n", encoding="utf-8"
    )


def test_shipped_head_is_the_one_alembic_finds() -> None:
    assert migrate.shipped_head() == migrate.head_revision()


def test_shipped_head_follows_the_chain(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", '"0001"', "None")
    _write(tmp_path, "b.py", '"0002"', '"0001"')
    _write(tmp_path, "c.py", '"0003"', '("0002",)')
    assert migrate.shipped_head(tmp_path) == "0003"


@pytest.mark.parametrize(
    "files",
    [
        [],  # nothing shipped
        [("a.py", '"0001"', "None"), ("b.py", '"0002"', '"0001"'), ("c.py", '"0003"', '"0001"')],
        [("a.py", '"0001"', "None"), ("b.py", "make_id()", '"0001"')],  # not a literal
        [("a.py", '"0002"', '"0001"')],  # its parent is missing
    ],
    ids=["empty", "two-heads", "computed-id", "missing-parent"],
)
def test_shipped_head_is_none_whenever_unsure(
    tmp_path: Path, files: list[tuple[str, str, str]]
) -> None:
    tmp_path.mkdir(exist_ok=True)
    for name, revision, down in files:
        _write(tmp_path, name, revision, down)
    assert migrate.shipped_head(tmp_path) is None


def test_a_database_at_head_is_checked_without_alembic(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def alembic_needed() -> str:
        raise AssertionError("alembic's ScriptDirectory was consulted for a database at head")

    monkeypatch.setattr(migrate, "head_revision", alembic_needed)
    assert migrate.at_head(db.engine)
    assert migrate.upgrade(db.engine) is False


def test_a_database_behind_head_is_migrated(
    db: Database,
    storage_cfg: StorageConfig,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    newer = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, newer, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.shipped_head()
    extra = EXTRA_REVISION.replace("{head}", str(head))
    (newer / "versions" / "9999_extra.py").write_text(extra, encoding="utf-8")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", newer)
    assert not migrate.at_head(db.engine)  # stamped at the shipped head, the files end at 9999
    Database.open(storage_cfg).close()
    with sqlite3.connect(db_path) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
        assert con.execute("SELECT count(*) FROM extra").fetchone() == (0,)
    assert migrate.at_head(db.engine)


def test_an_empty_database_is_not_at_head(tmp_path: Path) -> None:
    cfg = StorageConfig(url=f"sqlite:///{tmp_path / 'empty.db'}")
    with Database.open(cfg, migrate_schema=False) as db:
        with db.engine.connect() as conn:
            assert migrate.stamped_revisions(conn) == set()
        assert not migrate.at_head(db.engine)
