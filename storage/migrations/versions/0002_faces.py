"""Faces: one row per face a model scored; predictions gain the face count and whole score.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The verdicts view is recreated with columns appended (never reordered): `faces` (count), the
best face's box and score, and the whole-picture score.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

# 0001's columns, then the new ones. The best face is the highest-scoring one (lowest index
# among ties); a picture without faces has NULL box and face score and faces = 0.
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
    f.reason_code AS reason_code,
    p.faces AS faces,
    bf.x AS face_x,
    bf.y AS face_y,
    bf.w AS face_w,
    bf.h AS face_h,
    bf.score AS face_score,
    p.whole_score AS whole_score
FROM files f
LEFT JOIN predictions p ON p.id = f.prediction_id AND f.state = 'classified'
LEFT JOIN model_versions mv ON mv.id = p.model_version_id
LEFT JOIN faces bf ON bf.id = (
    SELECT fc.id FROM faces fc
    WHERE fc.prediction_id = p.id
    ORDER BY fc.score DESC, fc.face_index
    LIMIT 1
)
WHERE f.state IN ('classified', 'rejected')
"""

# Exactly 0001's view, for downgrade.
VERDICTS_VIEW_0001 = """
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


def upgrade() -> None:
    """Add the faces table and prediction columns; recreate the view."""
    op.execute("DROP VIEW verdicts")
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("faces", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("whole_score", sa.Double(), nullable=True))
    op.create_table(
        "faces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("w", sa.Integer(), nullable=False),
        sa.Column("h", sa.Integer(), nullable=False),
        sa.Column("detector_score", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faces")),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_faces_prediction_id_predictions"),
        ),
        sa.UniqueConstraint(
            "prediction_id", "face_index", name=op.f("uq_faces_prediction_id_face_index")
        ),
        sa.CheckConstraint("face_index >= 0", name=op.f("ck_faces_face_index")),
    )
    op.execute(VERDICTS_VIEW)


def downgrade() -> None:
    """Back to 0001: view, faces table and prediction columns removed."""
    op.execute("DROP VIEW verdicts")
    op.drop_table("faces")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("whole_score")
        batch.drop_column("faces")
    op.execute(VERDICTS_VIEW_0001)
