"""Evidence: provenance findings per image; predictions gain their verdict and what decided it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

`evidence` holds one row per provenance finding of an image's bytes (C2PA, XMP, PNG text, EXIF)
and `images.evidence` one readable line summing them up. `predictions.verdict` is the label a
file gets (`uncertain` inside the model's band, `ai` from provenance); `predictions.label` stays
the model's own call at its threshold, so its CHECK (real/ai) stands: widening it would mean
rebuilding `predictions`, which SQLite refuses while `files` and `faces` reference it. Rows
stored before this revision have no verdict: it is their label (COALESCE in the view).

The verdicts view is recreated with 0002's columns in the same order (`label` now shows the
verdict), then `evidence` (the summary) and `decided_by` (`model` or `provenance`) appended.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
    CASE WHEN p.id IS NOT NULL THEN COALESCE(p.decided_by, 'model') END AS decided_by
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

# Exactly 0002's view, for downgrade.
VERDICTS_VIEW_0002 = """
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

# Plain ALTER TABLE ... ADD COLUMN (SQLite and PostgreSQL): a batch rebuild of `predictions`
# would fail on the foreign keys pointing at it.
NEW_COLUMNS = (
    (
        "predictions",
        "verdict VARCHAR(16) CONSTRAINT ck_predictions_verdict"
        " CHECK (verdict IS NULL OR verdict IN ('real', 'ai', 'uncertain'))",
    ),
    (
        "predictions",
        "decided_by VARCHAR(16) CONSTRAINT ck_predictions_decided_by"
        " CHECK (decided_by IS NULL OR decided_by IN ('model', 'provenance'))",
    ),
    ("images", "evidence TEXT"),
)


def upgrade() -> None:
    """Add the evidence table and the new columns; recreate the view."""
    op.execute("DROP VIEW verdicts")
    for table, column in NEW_COLUMNS:
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("strength", sa.String(length=16), nullable=False),
        sa.Column("says", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_evidence_image_id_images")
        ),
        sa.UniqueConstraint("image_id", "position", name=op.f("uq_evidence_image_id_position")),
        sa.CheckConstraint(
            "strength IN ('declares_ai', 'hint', 'camera_claim', 'info', 'ignored')",
            name=op.f("ck_evidence_strength"),
        ),
    )
    op.execute(VERDICTS_VIEW)


def downgrade() -> None:
    """Back to 0002: view, evidence table and the new columns removed."""
    op.execute("DROP VIEW verdicts")
    op.drop_table("evidence")
    for table, column in reversed(NEW_COLUMNS):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column.split()[0]}")
    op.execute(VERDICTS_VIEW_0002)
