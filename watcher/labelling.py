"""Human labels (corrections): which image a label names, recording it, and how it compares with
the model's verdict. Shared by the `label` command and the HTTP API."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.orm import Session

from detector.errors import ImageRejected
from detector.imageio import LoadLimits, read_file, sha256_bytes
from storage import queries
from storage.queries import NotFound
from watcher.settings import Settings

logger = logging.getLogger(__name__)

_SHA256: Final = re.compile(r"^[0-9a-fA-F]{64}$")


class LabelTargetError(LookupError):
    """The PATH or SHA256 given to `label` names no known image."""


@dataclass(frozen=True, slots=True)
class LabelTarget:
    """The image a label is for."""

    sha256: str
    path: str | None  # the file it was read from, when labelled by path
    size_bytes: int | None


def resolve_target(s: Session, image: str, settings: Settings) -> LabelTarget:
    """Which image `image` names: an existing file (hashed), a SHA-256, or a screened path."""
    path = Path(image).expanduser()
    if path.is_file():
        limits = LoadLimits(settings.detector.max_file_bytes, settings.detector.max_pixels)
        try:
            data = read_file(path, limits)
        except ImageRejected as exc:
            raise LabelTargetError(f"cannot read {path}: {exc}") from exc
        return LabelTarget(sha256_bytes(data), str(path.resolve()), len(data))
    if _SHA256.match(image):
        return LabelTarget(image.lower(), None, None)
    # A file that was moved (or deleted) after screening: find it by its recorded paths.
    wanted = {image, str(path.resolve())}
    for row in queries.list_verdicts(s, status="classified"):
        if row.sha256 and (row.path in wanted or row.dest_path in wanted):
            return LabelTarget(row.sha256, row.dest_path or row.path, None)
    raise LabelTargetError(f"no such file and no screened file recorded at {image}")


def record_label(s: Session, image: str, label: str, note: str, settings: Settings) -> str:
    """Record `label` for the image `image` names; the sentence saying what was done."""
    target = resolve_target(s, image, settings)
    if target.size_bytes is not None:
        # A file never screened (e.g. found elsewhere) becomes a known image first.
        queries.upsert_image(s, target.sha256, target.size_bytes)
    try:
        queries.set_label(s, target.sha256, label, note)
    except NotFound:
        raise LabelTargetError(
            f"no screened image has SHA-256 {target.sha256}; name the file instead"
        ) from None
    logger.info("labelled %s as %s", target.sha256, label)
    return f"labelled {target.sha256[:12]} as {label}{_compare(s, target.sha256, label)}"


def _compare(s: Session, sha256: str, label: str) -> str:
    """'; the model said ...' for the newest verdict of this image, if any."""
    for row in queries.list_verdicts(s, status="classified"):
        if row.sha256 == sha256 and row.label is not None:
            agree = "agrees" if row.label == label else "disagrees with"
            score = f" (P(ai) {row.score:.3f})" if row.score is not None else ""
            return f"; this {agree} the model {row.model_version}: {row.label}{score}"
    return "; the model has not classified this image"
