"""Provenance metadata: what an image's own bytes say about where it came from.

Bytes in, small frozen findings out. Read here: a C2PA manifest (through the c2pa package:
claim generator, actions and their digital source type, whether the signature validates), the
IPTC digital source type in XMP, the text chunks generator UIs write into PNGs (A1111/Forge
`parameters`, ComfyUI `prompt`/`workflow`, InvokeAI, NovelAI, Fooocus, SwarmUI), and EXIF
Software/Make/Model (plus the UserComment where A1111 puts its parameters in JPEG/WebP).

Every file is hostile: containers are walked by hand with bounds checks, a metadata block larger
than `max_block_bytes` is recorded as an ignored finding instead of being read (a 50 MB XMP
packet costs a length check), XML is matched with bounded regular expressions and never parsed
(no entity expansion), and nothing here raises for bad input.

Modules: `findings` (the finding types and what counts how much), `containers` (JPEG, PNG and
WebP walkers), `metadata` (XMP, PNG text chunks, EXIF) and `manifest` (C2PA).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from detector.provenance.containers import sniff_mime, walk
from detector.provenance.findings import (
    AI_SOURCE_TYPES,
    DEFAULT_LIMITS,
    GENERATOR_NAMES,
    IGNORED,
    RANK,
    Finding,
    Kind,
    ProvenanceLimits,
    Strength,
    declaring_ai,
    summarize,
)
from detector.provenance.isolated import CallTimedOut, IsolatedCall, WorkerDied
from detector.provenance.manifest import c2pa_findings
from detector.provenance.metadata import exif_findings, text_finding, xmp_findings

__all__ = [
    "AI_SOURCE_TYPES",
    "DEFAULT_LIMITS",
    "GENERATOR_NAMES",
    "Finding",
    "Kind",
    "ProvenanceLimits",
    "Strength",
    "declaring_ai",
    "read_provenance",
    "sniff_mime",
    "summarize",
]

logger = logging.getLogger(__name__)


def read_provenance(data: bytes, limits: ProvenanceLimits = DEFAULT_LIMITS) -> tuple[Finding, ...]:
    """Everything the metadata of these image bytes says, strongest first; never raises."""
    try:
        findings = list(_findings(data, limits))
    except Exception as exc:  # a bug or an input no walker expected: record it, never crash
        logger.debug("provenance reading failed", exc_info=True)
        findings = [Finding(Kind.ERROR, f"metadata unreadable ({type(exc).__name__})", IGNORED)]
    findings = _dedupe(findings)
    findings.sort(key=lambda f: RANK[f.strength])
    return tuple(_clip(f, limits.max_says_chars) for f in findings[: limits.max_findings])


def _findings(data: bytes, limits: ProvenanceLimits) -> Iterator[Finding]:
    blocks = walk(data, limits)
    for error in blocks.errors:
        yield Finding(Kind.ERROR, error, IGNORED)
    if blocks.c2pa and limits.c2pa and blocks.mime is not None:
        yield from _c2pa_bounded(data, blocks.mime, limits.c2pa_timeout_s)
    for packet in blocks.xmp:
        yield from xmp_findings(packet)
    for key, text in blocks.texts:
        finding = text_finding(key, text)
        if finding is not None:
            yield finding
    for exif in blocks.exif:
        yield from exif_findings(exif)


_READERS: dict[float, IsolatedCall] = {}
_READERS_LOCK = threading.Lock()


def _c2pa_bounded(data: bytes, mime: str, timeout_s: float) -> list[Finding]:
    """c2pa_findings in a worker process that is killed past `timeout_s` (0: in this one)."""
    if timeout_s <= 0:
        return c2pa_findings(data, mime)
    with _READERS_LOCK:
        reader = _READERS.setdefault(timeout_s, IsolatedCall(c2pa_findings, timeout_s))
    try:
        found: list[Finding] = reader(data, mime)
        return found
    except CallTimedOut:
        says = f"C2PA manifest reading ran past {timeout_s:g} s and was stopped; not read"
    except WorkerDied as exc:
        says = f"C2PA manifest reading crashed ({exc}); not read"
    logger.warning("%s", says)
    return [Finding(Kind.ERROR, says, IGNORED)]


def _dedupe(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))  # e.g. the same XMP packet in two places


def _clip(finding: Finding, max_chars: int) -> Finding:
    says = " ".join(finding.says.split())  # no newlines or control runs in a one-line summary
    if len(says) > max_chars:
        says = says[: max_chars - 1] + "…"
    return finding if says == finding.says else Finding(finding.kind, says, finding.strength)
