"""Provenance evidence: the findings in an image's bytes, stored once per image."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import EVIDENCE_STRENGTHS, Evidence, Image
from storage.queries._common import _choice, _chunks, _insert_skipping_existing


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One finding: where it comes from, how much it counts, and what it says."""

    kind: str
    strength: str
    says: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict."""
        return {"kind": self.kind, "strength": self.strength, "says": self.says}


@dataclass(frozen=True, slots=True)
class ImageEvidence:
    """All findings of one image, strongest first, and the readable line summing them up."""

    items: tuple[EvidenceItem, ...]
    summary: str


def store_evidence(s: Session, by_image: Mapping[int, ImageEvidence]) -> int:
    """Record the evidence of images that have none yet (it is a property of the bytes).

    An image read before keeps what it has; returns how many images got their evidence now.
    """
    if not by_image:
        return 0
    fresh: list[int] = []
    for chunk in _chunks(sorted(by_image)):
        stmt = select(Image.id).where(Image.id.in_(chunk), Image.evidence.is_(None))
        fresh.extend(s.scalars(stmt))
    if not fresh:
        return 0
    rows: list[dict[str, Any]] = [
        {
            "image_id": image_id,
            "position": position,
            "kind": item.kind[:16],
            "strength": _choice("strength", item.strength, EVIDENCE_STRENGTHS),
            "says": item.says,
        }
        for image_id in sorted(fresh)
        for position, item in enumerate(by_image[image_id].items)
    ]
    if rows:
        s.execute(_insert_skipping_existing(s, Evidence, ("image_id", "position")), rows)
    summaries = [{"id": i, "evidence": by_image[i].summary} for i in sorted(fresh)]
    s.execute(update(Image), summaries)
    return len(fresh)


def evidence_for(s: Session, sha256s: Collection[str]) -> dict[str, ImageEvidence]:
    """The stored evidence of these images by hash (images never read are left out)."""
    found: dict[str, ImageEvidence] = {}
    wanted = sorted(set(sha256s))
    for chunk in _chunks(wanted):
        images = s.execute(
            select(Image.id, Image.sha256, Image.evidence).where(
                Image.sha256.in_(chunk), Image.evidence.is_not(None)
            )
        ).all()
        items = _items_by_image(s, [image_id for image_id, _, _ in images])
        for image_id, sha256, summary in images:
            found[sha256] = ImageEvidence(tuple(items.get(image_id, ())), summary or "")
    return found


def _items_by_image(s: Session, image_ids: Sequence[int]) -> dict[int, list[EvidenceItem]]:
    by_image: dict[int, list[EvidenceItem]] = {}
    if not image_ids:
        return by_image
    stmt = (
        select(Evidence.image_id, Evidence.kind, Evidence.strength, Evidence.says)
        .where(Evidence.image_id.in_(image_ids))
        .order_by(Evidence.image_id, Evidence.position)
    )
    for image_id, kind, strength, says in s.execute(stmt):
        by_image.setdefault(image_id, []).append(EvidenceItem(kind, strength, says))
    return by_image
