"""Initial schema: images, model registry, predictions, file arrivals, labels, runs; verdicts view.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

The tables are spelled out here instead of taken from storage.models: a migration is a frozen
snapshot, and must keep producing the same schema when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Aware datetimes: TIMESTAMP WITH TIME ZONE on PostgreSQL; SQLite stores naive UTC text.
TS = sa.DateTime(timezone=True)

# Portable SQL (SQLite and PostgreSQL). Users query this view directly: only append columns.
VERDICTS_VIEW = """
CREATE VIEW verdicts AS
SELECT
    f.id AS id,
    f.path AS path,
    f.sha256 AS sha256,
    f.state AS status,
    p.label AS label,
    p.score AS score,
    mv.version AS model_version,
    f.reason AS reason,
    f.screened_at AS created_at,
    f.discovered_at AS discovered_at,
    p.decode_ms AS decode_ms,
    p.infer_ms AS infer_ms,
    f.disposition AS disposition,
    f.dest_path AS dest_path,
    f.reason_code AS reason_code
FROM files f
LEFT JOIN predictions p ON p.id = f.prediction_id AND f.state = 'classified'
LEFT JOIN model_versions mv ON mv.id = p.model_version_id
WHERE f.state IN ('classified', 'rejected')
"""


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))


def _check(table: str, name: str, sql: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sql, name=op.f(f"ck_{table}_{name}"))


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    name = op.f(f"fk_{table}_{column}_{target}")
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=name)


def _create_images() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        _pk("images"),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
    )


def _create_model_versions() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("arch", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_size", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("data_fingerprint", sa.String(128), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("training", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("promoted_at", TS, nullable=True),
        sa.Column("retired_at", TS, nullable=True),
        _pk("model_versions"),
        sa.UniqueConstraint("version", name=op.f("uq_model_versions_version")),
        _check(
            "model_versions",
            "status",
            "status IN ('candidate', 'champion', 'retired', 'rejected')",
        ),
    )
    # At most one champion (partial unique index: SQLite >= 3.8 and PostgreSQL).
    op.create_index(
        "uq_model_versions_one_champion",
        "model_versions",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'champion'"),
        postgresql_where=sa.text("status = 'champion'"),
    )


def _create_predictions() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("decode_ms", sa.Double(), nullable=True),
        sa.Column("infer_ms", sa.Double(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _pk("predictions"),
        _fk("predictions", "image_id", "images"),
        _fk("predictions", "model_version_id", "model_versions"),
        sa.UniqueConstraint(
            "image_id",
            "model_version_id",
            name=op.f("uq_predictions_image_id_model_version_id"),
        ),
        _check("predictions", "label", "label IN ('real', 'ai')"),
    )
    op.create_index(op.f("ix_predictions_model_version_id"), "predictions", ["model_version_id"])


def _create_files() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=True),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.Column("dest_path", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("discovered_at", TS, nullable=False),
        sa.Column("screened_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        _pk("files"),
        _fk("files", "prediction_id", "predictions"),
        sa.UniqueConstraint(
            "path", "size_bytes", "mtime_ns", name=op.f("uq_files_path_size_bytes_mtime_ns")
        ),
        _check("files", "origin", "origin IN ('inbox', 'scan')"),
        _check("files", "state", "state IN ('pending', 'claimed', 'classified', 'rejected')"),
        _check(
            "files",
            "disposition",
            "disposition IS NULL OR disposition IN ('pending', 'moved', 'kept', 'failed')",
        ),
        _check("files", "attempts", "attempts >= 0"),
    )


def _create_files_indexes() -> None:
    op.create_index(op.f("ix_files_state"), "files", ["state"])
    op.create_index(op.f("ix_files_sha256"), "files", ["sha256"])
    op.create_index(op.f("ix_files_screened_at"), "files", ["screened_at"])
    op.create_index(
        op.f("ix_files_disposition_next_attempt_at"), "files", ["disposition", "next_attempt_at"]
    )


def _create_labels_and_evaluations() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _pk("labels"),
        _fk("labels", "image_id", "images"),
        sa.UniqueConstraint("image_id", name=op.f("uq_labels_image_id")),
        _check("labels", "label", "label IN ('real', 'ai')"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(256), nullable=False),
        sa.Column("data_fingerprint", sa.String(128), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _pk("evaluations"),
        _fk("evaluations", "model_version_id", "model_versions"),
    )
    op.create_index(op.f("ix_evaluations_model_version_id"), "evaluations", ["model_version_id"])


def _create_history() -> None:
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("candidate_version", sa.String(128), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        _pk("training_runs"),
        _check("training_runs", "status", "status IN ('running', 'succeeded', 'failed')"),
    )
    op.create_table(
        "model_activations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("activated_at", TS, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        _pk("model_activations"),
        _fk("model_activations", "model_version_id", "model_versions"),
    )


def upgrade() -> None:
    """Create every table, index and the verdicts view."""
    _create_images()
    _create_model_versions()
    _create_predictions()
    _create_files()
    _create_files_indexes()
    _create_labels_and_evaluations()
    _create_history()
    op.execute(VERDICTS_VIEW)


def downgrade() -> None:
    """Drop everything, view first (it depends on the tables)."""
    op.execute("DROP VIEW verdicts")
    for table in (
        "model_activations",
        "training_runs",
        "evaluations",
        "labels",
        "files",
        "predictions",
        "model_versions",
        "images",
    ):
        op.drop_table(table)
