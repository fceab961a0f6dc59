"""Human labels on seen images."""

from __future__ import annotations

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from storage.models import LABEL_VALUES, Disposition, FileRow, HumanLabel, Image, utcnow
from storage.queries._common import NotFound, _choice, _get_or_create


def set_label(s: Session, sha256: str, label: str, note: str = "") -> HumanLabel:
    """Record (or replace) a person's label for an already seen image."""
    image = s.scalars(select(Image).where(Image.sha256 == sha256)).one_or_none()
    if image is None:
        raise NotFound(f"no image with sha256 {sha256}")
    value = _choice("label", label, LABEL_VALUES)
    row, created = _get_or_create(
        s, HumanLabel, {"image_id": image.id}, {"label": value, "note": note}
    )
    if not created:
        row.label, row.note, row.created_at = value, note, utcnow()
    s.flush()
    return row


def human_labels(s: Session) -> list[tuple[str, str, str | None]]:
    """(sha256, label, latest path) per labelled image; the path is the moved-to one if moved."""
    latest = (
        select(FileRow.sha256, func.max(FileRow.id).label("file_id"))
        .where(FileRow.sha256.is_not(None))
        .group_by(FileRow.sha256)
        .subquery()
    )
    where_now = case(
        (
            and_(
                FileRow.disposition == Disposition.MOVED.value,
                FileRow.dest_path.is_not(None),
            ),
            FileRow.dest_path,
        ),
        else_=FileRow.path,
    )
    stmt = (
        select(Image.sha256, HumanLabel.label, where_now)
        .join(HumanLabel, HumanLabel.image_id == Image.id)
        .outerjoin(latest, latest.c.sha256 == Image.sha256)
        .outerjoin(FileRow, FileRow.id == latest.c.file_id)
        .order_by(HumanLabel.id)
    )
    return [(sha, label, path) for sha, label, path in s.execute(stmt)]
