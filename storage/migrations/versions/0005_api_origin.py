"""Files may come from the HTTP API: `files.origin` may be `api` (besides `inbox` and `scan`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Only the CHECK constraint on `files.origin` changes. PostgreSQL alters it in place; SQLite
cannot, so the table is rebuilt from its definition as revision 0001 created it (no table
references `files`, so the rebuild moves no foreign key), rows copied, indexes recreated. The
verdicts view reads `files` and is dropped and recreated around it, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
OLD_ORIGINS = "origin IN ('inbox', 'scan')"
NEW_ORIGINS = "origin IN ('inbox', 'scan', 'api')"

VERDICTS_VIEW = """
CREATE VIEW verdicts AS
SELECT
    f.id AS id,
    f.path AS path,
    f.sha256 AS sha256,
    f.state AS status,
    COALESCE(p.verdict, p.label) AS label,
    p.score AS score,
    mv.version AS model_version,
    f.reason AS reason,
    f.screened_at AS created_at,
    f.discovered_at AS discovered_at,
    p.decode_ms AS decode_ms,
    p.infer_ms AS infer_ms,
    f.disposition AS disposition,
    f.dest_path AS dest_path,
    f.reason_code AS reason_code,
    p.faces AS faces,
    bf.x AS face_x,
    bf.y AS face_y,
    bf.w AS face_w,
    bf.h AS face_h,
    bf.score AS face_score,
    p.whole_score AS whole_score,
    i.evidence AS evidence,
    CASE WHEN p.id IS NOT NULL THEN COALESCE(p.decided_by, 'model') END AS decided_by,
    f.origin AS origin
FROM files f
LEFT JOIN predictions p ON p.id = f.prediction_id AND f.state = 'classified'
LEFT JOIN model_versions mv ON mv.id = p.model_version_id
LEFT JOIN images i ON i.id = p.image_id
LEFT JOIN faces bf ON bf.id = (
    SELECT fc.id FROM faces fc
    WHERE fc.prediction_id = p.id
    ORDER BY fc.score DESC, fc.face_index
    LIMIT 1
)
WHERE f.state IN ('classified', 'rejected')
"""


def _files(origins: str) -> sa.Table:
    """`files` as revision 0001 created it, with the given origin constraint."""
    table = sa.Table(
        "files",
        sa.MetaData(),
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
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.ForeignKeyConstraint(
            ["prediction_id"], ["predictions.id"], name="fk_files_prediction_id_predictions"
        ),
        sa.UniqueConstraint(
            "path", "size_bytes", "mtime_ns", name="uq_files_path_size_bytes_mtime_ns"
        ),
        sa.CheckConstraint(origins, name="ck_files_origin"),
        sa.CheckConstraint(
            "state IN ('pending', 'claimed', 'classified', 'rejected')", name="ck_files_state"
        ),
        sa.CheckConstraint(
            "disposition IS NULL OR disposition IN ('pending', 'moved', 'kept', 'failed')",
            name="ck_files_disposition",
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_files_attempts"),
    )
    sa.Index("ix_files_state", table.c.state)
    sa.Index("ix_files_sha256", table.c.sha256)
    sa.Index("ix_files_screened_at", table.c.screened_at)
    sa.Index("ix_files_disposition_next_attempt_at", table.c.disposition, table.c.next_attempt_at)
    return table


def _switch(old: str, new: str) -> None:
    op.execute("DROP VIEW verdicts")
    with op.batch_alter_table("files", copy_from=_files(old)) as batch:
        # op.f: the name as it is, not run through the naming convention again.
        batch.drop_constraint(op.f("ck_files_origin"), type_="check")
        batch.create_check_constraint(op.f("ck_files_origin"), sa.text(new))
    op.execute(VERDICTS_VIEW)


def upgrade() -> None:
    """Allow origin 'api'."""
    _switch(OLD_ORIGINS, NEW_ORIGINS)


def downgrade() -> None:
    """Back to inbox and scan only (fails while files from the API are recorded)."""
    _switch(NEW_ORIGINS, OLD_ORIGINS)
