"""Alembic migrations: schema and view created, idempotent, safe under concurrent start-up."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage import migrate
from storage.config import StorageConfig
from storage.db import Database
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
]


def test_open_creates_every_table_the_view_and_stamps_head(db: Database, db_path: Path) -> None:
    with sqlite3.connect(db_path) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        views = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='view'")}
        version = con.execute("SELECT version_num FROM alembic_version").fetchall()
    assert tables - {"alembic_version"} == TABLES
    assert views == {"verdicts"}
    assert version == [(migrate.head_revision(),)]


def test_view_columns_are_the_documented_ones(db: Database, db_path: Path) -> None:
    with sqlite3.connect(db_path) as con:
        cursor = con.execute("SELECT * FROM verdicts")
        columns = [d[0] for d in cursor.description]
    assert columns == DOCUMENTED_VIEW_COLUMNS
    assert [c.name for c in verdicts_view.columns] == DOCUMENTED_VIEW_COLUMNS


def test_opening_again_is_a_no_op(db: Database, storage_cfg: StorageConfig) -> None:
    assert migrate.upgrade(db.engine) is False
    again = Database.open(storage_cfg)
    again.close()
    with db.engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()


def test_concurrent_first_opens_all_succeed(storage_cfg: StorageConfig, db_path: Path) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            barrier.wait()
            Database.open(storage_cfg).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sqlite3.connect(db_path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


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


def test_downgrade_then_upgrade_round_trips(db: Database, db_path: Path) -> None:
    with db.engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    with sqlite3.connect(db_path) as con:
        left = {
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        }
    assert left == {"alembic_version"}
    assert migrate.upgrade(db.engine) is True
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def test_developer_cli_lists_heads_and_renders_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(["heads"]) == 0
    assert f"{migrate.head_revision()} (head)" in capsys.readouterr().out
    assert migrate.main(["-x", "url=postgresql://u@localhost/db", "upgrade", "head", "--sql"]) == 0
    sql = capsys.readouterr().out
    assert "CREATE VIEW verdicts AS" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
