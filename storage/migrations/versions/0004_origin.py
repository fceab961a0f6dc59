"""The verdicts view names each verdict's origin: the inbox, or a one-off `scan`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

`files.origin` was stored from the start; the view now carries it (appended, so 0003's columns
keep their order), so every listing can tell a one-off check from an inbox arrival.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
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


# Exactly 0003's view, for downgrade.
VERDICTS_VIEW_0003 = """
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


def upgrade() -> None:
    """Recreate the view with `origin` appended."""
    op.execute("DROP VIEW verdicts")
    op.execute(VERDICTS_VIEW)


def downgrade() -> None:
    """Back to 0003's view."""
    op.execute("DROP VIEW verdicts")
    op.execute(VERDICTS_VIEW_0003)
