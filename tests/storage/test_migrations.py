"""Alembic migrations: schema and view created, idempotent, safe under concurrent start-up.

On SQLite and PostgreSQL alike (tests/conftest.py), from an empty database and from every
earlier revision the migration scripts define.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from storage import migrate
from storage.config import StorageConfig
from storage.db import Database, create_db_engine
from storage.models import Base, verdicts_view

TABLES = {
    "images",
    "model_versions",
    "predictions",
    "files",
    "labels",
    "evaluations",
    "training_runs",
    "model_activations",
    "faces",
    "evidence",
}
DOCUMENTED_VIEW_COLUMNS = [
    "id",
    "path",
    "sha256",
    "status",
    "label",
    "score",
    "model_version",
    "reason",
    "created_at",
    "discovered_at",
    "decode_ms",
    "infer_ms",
    "disposition",
    "dest_path",
    "reason_code",
    "faces",
    "face_x",
    "face_y",
    "face_w",
    "face_h",
    "face_score",
    "whole_score",
    "evidence",
    "decided_by",
    "origin",
]


def _earlier_revisions() -> list[str]:
    """Every revision before head, oldest first, after "base" (the empty database)."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    chain = [rev.revision for rev in script.walk_revisions("base", "heads")][::-1]
    return ["base", *chain[:-1]]


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """URL of a database nothing was ever created in (SQLite file, or a fresh PostgreSQL one)."""
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_empty_url"))
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def empty_engine(empty_url: str) -> Iterator[Engine]:
    """An engine on the empty database."""
    engine = create_db_engine(StorageConfig(url=empty_url))
    yield engine
    engine.dispose()


def _assert_at_head(engine: Engine) -> None:
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) - {"alembic_version"} == TABLES
    assert inspector.get_view_names() == ["verdicts"]
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.mark.parametrize("revision", _earlier_revisions())
def test_upgrade_from_every_earlier_revision_reaches_head(
    empty_engine: Engine, revision: str
) -> None:
    if revision != "base":
        with empty_engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), revision)
        with empty_engine.connect() as conn:
            assert migrate.current_revision(conn) == revision
    assert migrate.upgrade(empty_engine) is True
    _assert_at_head(empty_engine)
    assert migrate.upgrade(empty_engine) is False


def test_open_creates_every_table_the_view_and_stamps_head(db: Database) -> None:
    _assert_at_head(db.engine)
    with db.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    assert [tuple(v) for v in versions] == [(migrate.head_revision(),)]


def test_view_columns_are_the_documented_ones(db: Database) -> None:
    with db.engine.connect() as conn:
        columns = list(conn.execute(text("SELECT * FROM verdicts")).keys())
    assert columns == DOCUMENTED_VIEW_COLUMNS
    assert [c.name for c in verdicts_view.columns] == DOCUMENTED_VIEW_COLUMNS


def test_opening_again_is_a_no_op(db: Database, storage_cfg: StorageConfig) -> None:
    assert migrate.upgrade(db.engine) is False
    again = Database.open(storage_cfg)
    again.close()
    with db.engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()


_CONCURRENT_OPENS = """
import sys, threading
from storage.config import StorageConfig
from storage.db import Database
barrier, errors = threading.Barrier(6), []
def opener():
    try:
        barrier.wait()
        Database.open(StorageConfig(url=sys.argv[1], busy_timeout_ms=30_000)).close()
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=opener) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
sys.exit(1 if errors else 0)
"""


def test_concurrent_first_opens_all_succeed(empty_url: str, empty_engine: Engine) -> None:
    # In a fresh interpreter, so the six threads also import alembic for the first time
    # together (what once failed: see storage.migrate._import_alembic).
    done = subprocess.run(
        [sys.executable, "-c", _CONCURRENT_OPENS, empty_url],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with empty_engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    _assert_at_head(empty_engine)


def test_models_match_the_migrated_schema(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_expected_indexes_exist(db: Database) -> None:
    inspector = inspect(db.engine)
    files = {tuple(ix["column_names"]) for ix in inspector.get_indexes("files")}
    assert {("state",), ("disposition", "next_attempt_at"), ("sha256",)} <= files
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("files")}
    assert ("path", "size_bytes", "mtime_ns") in uniques
    preds = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("predictions")}
    assert ("image_id", "model_version_id") in preds


def test_downgrade_then_upgrade_round_trips(db: Database) -> None:
    with db.engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    inspector = inspect(db.engine)
    assert set(inspector.get_table_names()) == {"alembic_version"}
    assert inspector.get_view_names() == []
    assert migrate.upgrade(db.engine) is True
    _assert_at_head(db.engine)


def test_developer_cli_lists_heads_and_renders_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(["heads"]) == 0
    assert f"{migrate.head_revision()} (head)" in capsys.readouterr().out
    assert migrate.main(["-x", "url=postgresql://u@localhost/db", "upgrade", "head", "--sql"]) == 0
    sql = capsys.readouterr().out
    assert "CREATE VIEW verdicts AS" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql


# Rows as a 0001 database holds them (its columns only), inserted before upgrading to head.
_ROWS_0001 = [
    "INSERT INTO images (id, sha256, size_bytes, width, height, format, first_seen_at) VALUES "
    "(1, '" + "a" * 64 + "', 100, 64, 48, 'JPEG', '2026-01-01 00:00:00')",
    "INSERT INTO model_versions (id, version, arch, path, status, input_size, threshold, "
    "data_fingerprint, metrics, training, created_at) VALUES "
    "(1, 'v1', 'hp_cnn', '/m', 'champion', 128, 0.5, '', '{}', '{}', '2026-01-01 00:00:00')",
    "INSERT INTO predictions (id, image_id, model_version_id, score, label, decode_ms, "
    "infer_ms, created_at) VALUES (1, 1, 1, 0.9, 'ai', 1.0, 2.0, '2026-01-01 00:00:00')",
    "INSERT INTO files (id, path, sha256, size_bytes, mtime_ns, origin, state, attempts, "
    "prediction_id, disposition, discovered_at, screened_at, updated_at) VALUES "
    "(1, '/in/a.jpg', '" + "a" * 64 + "', 100, 1, 'inbox', 'classified', 1, 1, 'moved', "
    "'2026-01-01 00:00:00', '2026-01-01 00:00:01', '2026-01-01 00:00:01')",
    "INSERT INTO files (id, path, size_bytes, mtime_ns, origin, state, attempts, reason_code, "
    "reason, discovered_at, screened_at, updated_at) VALUES "
    "(2, '/in/b.jpg', 0, 1, 'inbox', 'rejected', 1, 'empty', 'the file is empty', "
    "'2026-01-01 00:00:00', '2026-01-01 00:00:01', '2026-01-01 00:00:01')",
]


def test_upgrading_from_the_first_revision_keeps_every_verdict(empty_engine: Engine) -> None:
    # Later revisions rebuild tables (SQLite batch mode) and recreate the view: a user's
    # history must come through whole.
    with empty_engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0001")
        for sql in _ROWS_0001:
            conn.execute(text(sql))
    assert migrate.upgrade(empty_engine) is True
    _assert_at_head(empty_engine)
    with empty_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, path, status, label, score, model_version, reason_code, faces,"
                " face_score, whole_score FROM verdicts ORDER BY id"
            )
        ).all()
        predictions = conn.execute(text("SELECT id, score, label FROM predictions")).all()
    assert [tuple(r) for r in rows] == [
        (1, "/in/a.jpg", "classified", "ai", 0.9, "v1", None, None, None, None),
        (2, "/in/b.jpg", "rejected", None, None, None, "empty", None, None, None),
    ]
    assert [tuple(p) for p in predictions] == [(1, 0.9, "ai")]
