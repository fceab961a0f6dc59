"""Findings: what one piece of provenance metadata says, and how much it counts."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final


class Kind(enum.StrEnum):
    """Where a finding comes from."""

    C2PA = "c2pa"
    XMP = "xmp"
    PNG_TEXT = "png_text"
    EXIF = "exif"
    ERROR = "error"  # metadata present but unreadable or over a limit


class Strength(enum.StrEnum):
    """How much a finding counts."""

    DECLARES_AI = "declares_ai"  # decides the verdict: ai, whatever the model says
    HINT = "hint"  # points at a generator but decides nothing (e.g. a Software name)
    CAMERA_CLAIM = "camera_claim"  # says "camera"; anyone can write it, so it is never trusted
    INFO = "info"  # neutral facts, e.g. an editor's name
    IGNORED = "ignored"  # unreadable or too large; recorded, never used


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the metadata says: its kind, a short readable text, and how strong it is."""

    kind: Kind
    says: str
    strength: Strength


@dataclass(frozen=True, slots=True)
class ProvenanceLimits:
    """Bounds on the work spent on one file's metadata."""

    # One XMP packet, EXIF block or text chunk; larger ones are recorded and skipped.
    max_block_bytes: int = 1_000_000
    # Container chunks/segments walked per file (a PNG of a million empty chunks stops here).
    max_blocks: int = 4_096
    # Findings kept per file, and characters kept per finding text.
    max_findings: int = 16
    max_says_chars: int = 160
    # Bytes searched for an XMP packet in formats without a container walker (GIF, TIFF, AVIF).
    max_scan_bytes: int = 4_000_000
    # C2PA manifests are read (and their signatures checked) through the c2pa package, in a
    # worker process killed past this many seconds (a hang in native code cannot be interrupted
    # otherwise; 0 reads in this process).
    c2pa: bool = True
    c2pa_timeout_s: float = 5.0


DEFAULT_LIMITS: Final[ProvenanceLimits] = ProvenanceLimits()

IGNORED: Final = Strength.IGNORED
DECLARES: Final = Strength.DECLARES_AI
RANK: Final[dict[Strength, int]] = {s: i for i, s in enumerate(Strength)}
# IPTC digital source types (https://cv.iptc.org/newscodes/digitalsourcetype/), longest first.
AI_SOURCE_TYPES: Final[frozenset[str]] = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
)
_SYNTHETIC_SOURCE_TYPES: Final[frozenset[str]] = frozenset(
    {"algorithmicMedia", "compositeSynthetic"}
)
_CAMERA_SOURCE_TYPES: Final[frozenset[str]] = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"}
)
GENERATOR_NAMES: Final = re.compile(
    r"stable.?diffusion|midjourney|dall.?e|firefly|novelai|comfyui|invokeai|automatic1111"
    r"|sd.?webui|fooocus|swarmui|dreamstudio|leonardo\.?ai|nightcafe|craiyon|ideogram"
    r"|imagen|gpt-4o|chatgpt|bing image creator|image creator|flux\.|dreamshaper",
    re.IGNORECASE,
)


def declaring_ai(findings: Iterable[Finding]) -> Finding | None:
    """The first finding that declares AI generation (decides the verdict), or None."""
    return next((f for f in findings if f.strength is Strength.DECLARES_AI), None)


def summarize(findings: Iterable[Finding], max_chars: int = 240) -> str:
    """A short readable line for people (the `evidence` column); "" when nothing was found."""
    parts = [f"{f.kind}: {f.says}" + QUALIFIER.get(f.strength, "") for f in findings]
    text = "; ".join(parts)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


QUALIFIER: Final[dict[Strength, str]] = {
    Strength.DECLARES_AI: " [declares AI]",
    Strength.HINT: " [hint]",
    Strength.CAMERA_CLAIM: " [camera claim, not trusted]",
    Strength.IGNORED: " [ignored]",
}


def source_type_finding(kind: Kind, code: str, what: str) -> Finding:
    """A finding for an IPTC digital source type code, by how much that code counts."""
    if code in AI_SOURCE_TYPES:
        return Finding(kind, f"{what} {code} (made by a trained AI model)", Strength.DECLARES_AI)
    if code in _SYNTHETIC_SOURCE_TYPES:
        return Finding(kind, f"{what} {code} (synthetic)", Strength.HINT)
    if code in _CAMERA_SOURCE_TYPES:
        return Finding(kind, f"{what} {code}", Strength.CAMERA_CLAIM)
    return Finding(kind, f"{what} {code}", Strength.INFO)


def software_finding(kind: Kind, what: str, name: str) -> Finding:
    """A hint when a software name names an image generator, else information."""
    name = name.strip()[:80]
    if GENERATOR_NAMES.search(name):
        return Finding(kind, f"{what} {name!r} names an image generator", Strength.HINT)
    return Finding(kind, f"{what} {name!r}", Strength.INFO)
