"""The review page: the pictures screened most recently, flagged ones first, each as a small
thumbnail with its faces boxed and the exact command that corrects its verdict.

Thumbnails are made from the file where it is now (its destination once moved), decoded under the
same byte and pixel limits as screening, and kept to a few KB each, so the page stays small and
self-contained; a file that is gone or unreadable gets a placeholder instead.
"""

from __future__ import annotations

import base64
import io
import logging
import shlex
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageOps

from detector.errors import ImageRejected
from detector.imageio import LoadLimits, read_file
from reports.page import Note, Page, Review, ReviewCard, Section, Stamp, nodata_section
from storage.queries.review import FaceBox, ReviewItem

logger = logging.getLogger(__name__)

THUMB_SIDE: Final[int] = 160
# The page stays a few MB at most whatever review_count says.
MAX_CARDS: Final[int] = 500
# Upper bound of one thumbnail's JPEG bytes; quality steps down until it fits.
THUMB_MAX_BYTES: Final[int] = 6_000
QUALITIES: Final[tuple[int, ...]] = (72, 60, 48, 36, 25)
EVIDENCE_CHARS: Final[int] = 600
BOX_COLOURS: Final[dict[str, str]] = {"ai": "#e0281c", "uncertain": "#f29d0c", "real": "#19a34a"}
_LIMITS: Final = LoadLimits()


def build_review_page(
    items: Sequence[ReviewItem], *, stamp: Stamp, count: int, command: str
) -> Page:
    """The review page; `command` is how to run the product (e.g. `deepfake-detector`)."""
    title = "Review: recently screened pictures"
    if not items:
        reason = "no picture has been screened yet; drop images into the inbox."
        return Page("review", title, stamp, (nodata_section("flagged", "Flagged", reason),))
    flagged = [i for i in items if i.flagged]
    others = [i for i in items if not i.flagged]
    intro = Note(
        f"Up to {count} recent pictures, flagged ones (ai, uncertain) first, newest first. "
        "Boxes mark the faces found, with each face's score. To correct a verdict, copy its "
        "command into a terminal: the label joins the next retraining's training data."
    )
    sections = [
        Section(
            "flagged",
            f"Flagged ({len(flagged)})",
            (intro, Review(tuple(card(i, command) for i in flagged)))
            if flagged
            else (intro, Note("Nothing flagged among the recent pictures.", "good")),
        ),
        Section(
            "real",
            f"Screened as real ({len(others)})",
            (Review(tuple(card(i, command) for i in others)),)
            if others
            else (Note("No recent picture was screened as real."),),
        ),
    ]
    summary = f"{len(items)} pictures: {len(flagged)} flagged, {len(others)} real."
    return Page("review", title, stamp, tuple(sections), summary=summary)


def card(item: ReviewItem, command: str) -> ReviewCard:
    """One picture's card: thumbnail, facts and the correction command(s)."""
    where = current_location(item)
    uri, missing = thumbnail_with_faces(where, item.faces, item.label or "")
    facts: list[tuple[str, str]] = [
        ("score", f"{item.score:.3f}" if item.score is not None else "—"),
        ("screened", _when(item.created_at)),
        ("path", item.path),
    ]
    if str(where) != item.path:
        facts.append(("now at", str(where)))
    facts.append(("faces", _faces_text(item.faces, item.face_count)))
    if item.decided_by and item.decided_by != "model":  # e.g. provenance metadata said so
        facts.append(("decided by", item.decided_by))
    if item.whole_score is not None:
        facts.append(("whole picture", f"{item.whole_score:.3f}"))
    facts.append(("model", item.model_version or "—"))
    return ReviewCard(
        uri=uri,
        label=item.label or "?",
        flagged=item.flagged,
        facts=tuple(facts),
        commands=correction_commands(command, where, item.label),
        evidence=_evidence(item.evidence),
        missing=missing,
    )


def current_location(item: ReviewItem) -> Path:
    """Where the file is now: its destination when it was moved, else where it was found."""
    if item.disposition == "moved" and item.dest_path:
        return Path(item.dest_path)
    return Path(item.path)


def correction_commands(command: str, path: Path, label: str | None) -> tuple[str, ...]:
    """`label` commands recording the other verdict(s), the path shell-quoted."""
    targets = {"ai": ("real",), "real": ("ai",)}.get(label or "", ("real", "ai"))
    return tuple(f"{command} label {shlex.quote(str(path))} {t}" for t in targets)


def thumbnail_with_faces(path: Path, faces: Sequence[FaceBox], label: str) -> tuple[str, str]:
    """(JPEG data: URI with the faces boxed, "") or ("", why there is no thumbnail)."""
    try:
        im, source_w = _open_oriented(path)
    except ImageRejected as exc:
        gone = exc.code in ("vanished", "not_a_file")
        return "", "no thumbnail: the file is no longer there" if gone else f"no thumbnail: {exc}"
    # Small pictures are enlarged too, so boxes and scores are drawn at the size shown.
    scale = THUMB_SIDE / max(im.width, im.height)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(size, Image.Resampling.BILINEAR)
    if faces:
        _draw_boxes(im, faces, im.width / max(source_w, 1), BOX_COLOURS.get(label, "#2457a6"))
    return _jpeg_uri(im), ""


def _open_oriented(path: Path) -> tuple[Image.Image, int]:
    """The picture as displayed (EXIF orientation applied), RGB, decoded at reduced size, and
    its full width in source pixels (the unit of the face boxes)."""
    data = read_file(path, _LIMITS)
    try:
        with Image.open(io.BytesIO(data)) as raw:
            if raw.width * raw.height > _LIMITS.max_pixels:
                raise ImageRejected("too_many_pixels", f"{raw.width}x{raw.height} pixels")
            full = raw.size
            if raw.format == "JPEG":
                raw.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
            raw.load()
            oriented = ImageOps.exif_transpose(raw) or raw
            im = oriented.convert("RGB")
            # The decoder may have reduced the picture (draft); boxes are in full-size pixels.
            rotated = (oriented.width > oriented.height) != (raw.width > raw.height)
            return im, full[1] if rotated else full[0]
    except ImageRejected:
        raise
    except Exception as exc:  # any decoder failure: a placeholder, never a broken page
        raise ImageRejected("unreadable", f"cannot decode: {type(exc).__name__}") from exc


def _draw_boxes(im: Image.Image, faces: Sequence[FaceBox], scale: float, colour: str) -> None:
    draw = ImageDraw.Draw(im)
    for f in faces:
        x0, y0 = f.x * scale, f.y * scale
        x1, y1 = (f.x + f.w) * scale, (f.y + f.h) * scale
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        if f.score is not None:
            text = f"{f.score:.2f}"
            ty = max(0.0, y0 - 11)
            draw.rectangle((x0, ty, x0 + 6 * len(text) + 3, ty + 11), fill=colour)
            draw.text((x0 + 2, ty), text, fill="white")


def _jpeg_uri(im: Image.Image) -> str:
    data = b""
    for quality in QUALITIES:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
        data = buf.getvalue()
        if len(data) <= THUMB_MAX_BYTES:
            break
    else:
        im = im.resize((max(1, im.width // 2), max(1, im.height // 2)))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=QUALITIES[-1], optimize=True)
        data = buf.getvalue()
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _faces_text(faces: Sequence[FaceBox], count: int | None) -> str:
    if not faces:
        return "none found" if count == 0 else "not recorded"
    scores = [f"{f.score:.2f}" for f in faces if f.score is not None]
    return f"{len(faces)}" + (f" (scores {', '.join(scores)})" if scores else "")


def _evidence(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS] + " …"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"
