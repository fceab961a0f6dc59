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
"""

from __future__ import annotations

import enum
import io
import json
import logging
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

logger = logging.getLogger(__name__)


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
    # C2PA manifests are read (and their signatures checked) through the c2pa package.
    c2pa: bool = True


DEFAULT_LIMITS: Final[ProvenanceLimits] = ProvenanceLimits()

_IGN: Final = Strength.IGNORED
_DECLARES: Final = Strength.DECLARES_AI
_RANK: Final[dict[Strength, int]] = {s: i for i, s in enumerate(Strength)}
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
_SOURCE_TYPE_RE: Final = re.compile(
    r"\b(compositeWithTrainedAlgorithmicMedia|trainedAlgorithmicMedia|algorithmicallyEnhanced"
    r"|algorithmicMedia|compositeSynthetic|compositeCapture|computationalCapture|digitalCapture"
    r"|negativeFilm|positiveFilm|print|minorHumanEdits|humanEdits|digitalArt|dataDrivenMedia"
    r"|virtualRecording|screenCapture|composite)\b"
)
# An opening tag or attribute named DigitalSourceType (any namespace prefix), not a closing tag.
_XMP_SOURCE_RE: Final = re.compile(r"(?<![/\w])[\w.-]{1,40}:DigitalSourceType\b")
_XMP_CREATOR_RE: Final = re.compile(
    r"xmp:CreatorTool(?:\s*=\s*[\"']([^\"'<>]{1,200})[\"']|\s*>([^<>]{1,200})<)"
)
GENERATOR_NAMES: Final = re.compile(
    r"stable.?diffusion|midjourney|dall.?e|firefly|novelai|comfyui|invokeai|automatic1111"
    r"|sd.?webui|fooocus|swarmui|dreamstudio|leonardo\.?ai|nightcafe|craiyon|ideogram"
    r"|imagen|gpt-4o|chatgpt|bing image creator|image creator|flux\.|dreamshaper",
    re.IGNORECASE,
)
_SD_PARAMS_RE: Final = re.compile(r"\b(Steps|Sampler|CFG scale|Seed): ")
_SD_MODEL_RE: Final = re.compile(r"\bModel: ([^,\n]{1,60})")

_PNG_SIGNATURE: Final[bytes] = b"\x89PNG\r\n\x1a\n"
_XMP_JPEG_NS: Final[bytes] = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_XMP_KEY: Final[str] = "XML:com.adobe.xmp"
_EXIF_SOFTWARE, _EXIF_MAKE, _EXIF_MODEL = 0x0131, 0x010F, 0x0110
_EXIF_DESCRIPTION, _EXIF_IFD, _EXIF_USER_COMMENT = 0x010E, 0x8769, 0x9286


@dataclass(slots=True)
class _Blocks:
    """Raw metadata a container walker found, before interpretation."""

    mime: str | None = None
    exif: list[bytes] = field(default_factory=list)
    xmp: list[bytes] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    c2pa: bool = False


def read_provenance(data: bytes, limits: ProvenanceLimits = DEFAULT_LIMITS) -> tuple[Finding, ...]:
    """Everything the metadata of these image bytes says, strongest first; never raises."""
    try:
        findings = list(_findings(data, limits))
    except Exception as exc:  # a bug or an input no walker expected: record it, never crash
        logger.debug("provenance reading failed", exc_info=True)
        findings = [Finding(Kind.ERROR, f"metadata unreadable ({type(exc).__name__})", _IGN)]
    findings = _dedupe(findings)
    findings.sort(key=lambda f: _RANK[f.strength])
    return tuple(_clip(f, limits.max_says_chars) for f in findings[: limits.max_findings])


def _findings(data: bytes, limits: ProvenanceLimits) -> Iterator[Finding]:
    blocks = _walk(data, limits)
    for error in blocks.errors:
        yield Finding(Kind.ERROR, error, _IGN)
    if blocks.c2pa and limits.c2pa and blocks.mime is not None:
        yield from _c2pa_findings(data, blocks.mime)
    for packet in blocks.xmp:
        yield from _xmp_findings(packet)
    for key, text in blocks.texts:
        finding = _text_finding(key, text)
        if finding is not None:
            yield finding
    for exif in blocks.exif:
        yield from _exif_findings(exif)


def declaring_ai(findings: Iterable[Finding]) -> Finding | None:
    """The first finding that declares AI generation (decides the verdict), or None."""
    return next((f for f in findings if f.strength is Strength.DECLARES_AI), None)


def summarize(findings: Iterable[Finding], max_chars: int = 240) -> str:
    """A short readable line for people (the `evidence` column); "" when nothing was found."""
    parts = [f"{f.kind}: {f.says}" + _QUALIFIER.get(f.strength, "") for f in findings]
    text = "; ".join(parts)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


_QUALIFIER: Final[dict[Strength, str]] = {
    Strength.DECLARES_AI: " [declares AI]",
    Strength.HINT: " [hint]",
    Strength.CAMERA_CLAIM: " [camera claim, not trusted]",
    Strength.IGNORED: " [ignored]",
}


def _dedupe(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))  # e.g. the same XMP packet in two places


def _clip(finding: Finding, max_chars: int) -> Finding:
    says = " ".join(finding.says.split())  # no newlines or control runs in a one-line summary
    if len(says) > max_chars:
        says = says[: max_chars - 1] + "…"
    return finding if says == finding.says else Finding(finding.kind, says, finding.strength)


# --- containers ---------------------------------------------------------------------------


def sniff_mime(data: bytes) -> str | None:
    """The MIME type these bytes start like (the formats the c2pa package reads), or None."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "image/avif" if brand in (b"avif", b"avis") else "image/heif"
    return None


def _walk(data: bytes, limits: ProvenanceLimits) -> _Blocks:
    blocks = _Blocks(mime=sniff_mime(data))
    view = memoryview(data)
    if blocks.mime == "image/jpeg":
        _walk_jpeg(view, limits, blocks)
    elif blocks.mime == "image/png":
        _walk_png(view, limits, blocks)
    elif blocks.mime == "image/webp":
        _walk_webp(view, limits, blocks)
    elif blocks.mime is not None:
        _scan_generic(view, limits, blocks)
    return blocks


def _walk_jpeg(view: memoryview, limits: ProvenanceLimits, out: _Blocks) -> None:
    """APP1 (EXIF, XMP), APP11 (JUMBF: C2PA) and COM segments, up to the start of scan."""
    pos, seen = 2, 0
    while pos + 4 <= len(view) and seen < limits.max_blocks:
        if view[pos] != 0xFF:
            return  # not a marker: corrupt, stop reading metadata
        marker = view[pos + 1]
        if marker == 0xFF:
            pos += 1  # fill byte
            continue
        if marker in (0xD9, 0xDA):
            return  # end of image / start of scan: no metadata segments after this
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2  # markers without a length
            continue
        length = int.from_bytes(view[pos + 2 : pos + 4], "big")
        payload = view[pos + 4 : pos + 2 + length]
        seen += 1
        if marker == 0xE1:
            _jpeg_app1(bytes(payload[:64]), payload, out)
        elif marker == 0xEB and b"c2pa" in payload.tobytes():
            out.c2pa = True
        pos += 2 + max(length, 2)


def _jpeg_app1(head: bytes, payload: memoryview, out: _Blocks) -> None:
    if head.startswith(b"Exif\x00\x00"):
        out.exif.append(bytes(payload[6:]))
    elif head.startswith(_XMP_JPEG_NS):
        out.xmp.append(bytes(payload[len(_XMP_JPEG_NS) :]))


def _walk_png(view: memoryview, limits: ProvenanceLimits, out: _Blocks) -> None:
    """tEXt/zTXt/iTXt (generator UIs, XMP), eXIf, and caBX (C2PA) chunks."""
    pos, seen = len(_PNG_SIGNATURE), 0
    while pos + 12 <= len(view) and seen < limits.max_blocks:
        length = int.from_bytes(view[pos : pos + 4], "big")
        ctype = bytes(view[pos + 4 : pos + 8])
        body = view[pos + 8 : pos + 8 + length]
        seen += 1
        if ctype == b"IEND" or len(body) < length:
            return
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            _png_text(ctype, body, limits, out)
        elif ctype == b"eXIf":
            _keep_block(out.exif, "EXIF block", body, limits, out)
        elif ctype == b"caBX":
            out.c2pa = True
        pos += 12 + length


def _png_text(ctype: bytes, body: memoryview, limits: ProvenanceLimits, out: _Blocks) -> None:
    if len(body) > limits.max_block_bytes:
        key = bytes(body[:80]).split(b"\x00", 1)[0].decode("latin-1")
        out.errors.append(f"PNG text chunk {key!r} of {len(body):,} bytes over the limit; not read")
        return
    raw = bytes(body)
    key_bytes, _, rest = raw.partition(b"\x00")
    key = key_bytes[:79].decode("latin-1")
    try:
        text = _png_text_value(ctype, rest, limits.max_block_bytes)
    except (ValueError, zlib.error) as exc:
        out.errors.append(f"PNG text chunk {key!r} unreadable: {exc}")
        return
    if key == _PNG_XMP_KEY:
        out.xmp.append(text.encode("utf-8"))
    else:
        out.texts.append((key, text))


def _png_text_value(ctype: bytes, rest: bytes, max_bytes: int) -> str:
    if ctype == b"tEXt":
        return rest.decode("latin-1")
    if ctype == b"zTXt":
        return _inflate(rest[1:], max_bytes).decode("latin-1")
    compressed, method = rest[:1] == b"\x01", rest[1:2]
    _lang, _, rest = rest[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    if compressed and method == b"\x00":
        text = _inflate(text, max_bytes)
    return text.decode("utf-8", errors="replace")


def _inflate(data: bytes, max_bytes: int) -> bytes:
    """zlib-decompress at most max_bytes (a zip bomb in a zTXt chunk stops here)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, max_bytes)
    if inflater.unconsumed_tail:
        raise ValueError(f"decompresses to more than {max_bytes:,} bytes")
    return out


def _walk_webp(view: memoryview, limits: ProvenanceLimits, out: _Blocks) -> None:
    """RIFF chunks EXIF, 'XMP ' and C2PA."""
    pos, seen = 12, 0
    while pos + 8 <= len(view) and seen < limits.max_blocks:
        fourcc = bytes(view[pos : pos + 4])
        length = int.from_bytes(view[pos + 4 : pos + 8], "little")
        body = view[pos + 8 : pos + 8 + length]
        seen += 1
        if fourcc == b"EXIF":
            _keep_block(out.exif, "EXIF block", body, limits, out)
        elif fourcc == b"XMP ":
            _keep_block(out.xmp, "XMP packet", body, limits, out)
        elif fourcc == b"C2PA":
            out.c2pa = True
        pos += 8 + length + (length & 1)


def _scan_generic(view: memoryview, limits: ProvenanceLimits, out: _Blocks) -> None:
    """GIF, TIFF, AVIF, HEIF: find an XMP packet by its markers in the first bytes."""
    head = bytes(view[: limits.max_scan_bytes])
    out.c2pa = b"c2pa" in head
    start = head.find(b"<x:xmpmeta")
    if start < 0:
        return
    end = head.find(b"</x:xmpmeta>", start)
    if end < 0:
        out.errors.append("XMP packet without an end within the bytes examined; not read")
        return
    _keep_block(out.xmp, "XMP packet", memoryview(head)[start : end + 12], limits, out)


def _keep_block(
    into: list[bytes], what: str, body: memoryview, limits: ProvenanceLimits, out: _Blocks
) -> None:
    if len(body) > limits.max_block_bytes:
        out.errors.append(f"{what} of {len(body):,} bytes over the limit; not read")
    else:
        into.append(bytes(body))


# --- XMP ----------------------------------------------------------------------------------


def _xmp_findings(packet: bytes) -> Iterator[Finding]:
    text = packet.decode("utf-8", errors="replace")
    if "<!ENTITY" in text or "<!DOCTYPE" in text:
        # XMP never needs a DTD; one that declares entities is an expansion attack.
        yield Finding(Kind.ERROR, "XMP packet declares a DTD or entities; not read", _IGN)
        return
    for match in list(_XMP_SOURCE_RE.finditer(text))[:8]:
        code = _SOURCE_TYPE_RE.search(text, match.end(), match.end() + 300)
        if code is not None:
            yield _source_type_finding(Kind.XMP, code.group(1), "IPTC digital source type")
    creator = _XMP_CREATOR_RE.search(text)
    if creator is not None:
        tool = (creator.group(1) or creator.group(2) or "").strip()
        if tool:
            yield _software_finding(Kind.XMP, "creator tool", tool)


def _source_type_finding(kind: Kind, code: str, what: str) -> Finding:
    if code in AI_SOURCE_TYPES:
        return Finding(kind, f"{what} {code} (made by a trained AI model)", Strength.DECLARES_AI)
    if code in _SYNTHETIC_SOURCE_TYPES:
        return Finding(kind, f"{what} {code} (synthetic)", Strength.HINT)
    if code in _CAMERA_SOURCE_TYPES:
        return Finding(kind, f"{what} {code}", Strength.CAMERA_CLAIM)
    return Finding(kind, f"{what} {code}", Strength.INFO)


def _software_finding(kind: Kind, what: str, name: str) -> Finding:
    name = name.strip()[:80]
    if GENERATOR_NAMES.search(name):
        return Finding(kind, f"{what} {name!r} names an image generator", Strength.HINT)
    return Finding(kind, f"{what} {name!r}", Strength.INFO)


# --- PNG text chunks of generator UIs -----------------------------------------------------


def _text_finding(key: str, text: str) -> Finding | None:
    lowered = key.strip().lower()
    if lowered == "parameters":
        return _sd_parameters(text)
    if lowered in _GENERATOR_KEYS:
        ui, marker = _GENERATOR_KEYS[lowered]
        if marker is None or marker in text:
            return Finding(Kind.PNG_TEXT, f"{ui} generation data ({key!r} chunk)", _DECLARES)
        return Finding(Kind.PNG_TEXT, f"{key!r} chunk of the kind {ui} writes", Strength.HINT)
    if lowered == "comment" and '"steps"' in text and ('"sampler"' in text or '"seed"' in text):
        return Finding(Kind.PNG_TEXT, "NovelAI generation settings ('Comment' chunk)", _DECLARES)
    if lowered in ("software", "source"):
        return _software_finding(Kind.PNG_TEXT, key.lower(), text)
    return None


# key -> (UI that writes it, text its genuine content contains; None: the key alone suffices)
_GENERATOR_KEYS: Final[dict[str, tuple[str, str | None]]] = {
    "prompt": ("ComfyUI", '"class_type"'),
    "workflow": ("ComfyUI", '"nodes"'),
    "invokeai_metadata": ("InvokeAI", None),
    "invokeai_graph": ("InvokeAI", None),
    "sd-metadata": ("InvokeAI", None),
    "dream": ("InvokeAI", None),
    "fooocus_scheme": ("Fooocus", None),
    "sui_image_params": ("SwarmUI", None),
}


def _sd_parameters(text: str) -> Finding:
    """A1111/Forge/SD.Next write the prompt then 'Steps: 20, Sampler: ..., Model: ...'."""
    if len(_SD_PARAMS_RE.findall(text[:20_000])) >= 2:
        model = _SD_MODEL_RE.search(text[:20_000])
        extra = f", model {model.group(1).strip()}" if model else ""
        return Finding(Kind.PNG_TEXT, f"Stable Diffusion WebUI parameters{extra}", _DECLARES)
    if text.lstrip().startswith("{") and '"prompt"' in text:
        return Finding(Kind.PNG_TEXT, "Fooocus generation parameters", _DECLARES)
    return Finding(
        Kind.PNG_TEXT, "'parameters' chunk of the kind generator UIs write", Strength.HINT
    )


# --- EXIF ---------------------------------------------------------------------------------


def _exif_findings(block: bytes) -> Iterator[Finding]:
    from PIL import Image

    if block.startswith(b"Exif\x00\x00"):
        block = block[6:]
    exif = Image.Exif()
    try:
        exif.load(block)
        tags = dict(exif.items())
        tags.update(exif.get_ifd(_EXIF_IFD).items())
    except Exception as exc:  # Pillow raises many kinds on hostile TIFF structures
        yield Finding(Kind.ERROR, f"EXIF unreadable ({type(exc).__name__})", _IGN)
        return
    for tag in (_EXIF_USER_COMMENT, _EXIF_DESCRIPTION):
        text = _exif_text(tags.get(tag))
        if text and len(_SD_PARAMS_RE.findall(text[:20_000])) >= 2:
            yield Finding(Kind.EXIF, "Stable Diffusion WebUI parameters in EXIF", _DECLARES)
            break
    software = _exif_text(tags.get(_EXIF_SOFTWARE))
    if software:
        yield _software_finding(Kind.EXIF, "software", software)
    camera = " ".join(
        t for t in (_exif_text(tags.get(_EXIF_MAKE)), _exif_text(tags.get(_EXIF_MODEL))) if t
    )
    if camera:
        yield Finding(Kind.EXIF, f"camera {camera[:80]!r}", Strength.CAMERA_CLAIM)


def _exif_text(value: Any) -> str:
    """A tag's value as text; UserComment's 8-byte charset prefix understood."""
    if isinstance(value, str):
        return value.strip("\x00 ").strip()
    if not isinstance(value, bytes):
        return ""
    prefix, body = value[:8], value[8:]
    if prefix.startswith(b"UNICODE"):
        # piexif (A1111) writes UTF-16 big-endian; some writers use little-endian.
        codec = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(codec, errors="replace").strip("\x00 ")
    if prefix.startswith(b"ASCII") or prefix == b"\x00" * 8:
        return body.decode("latin-1").strip("\x00 ")
    return value.decode("utf-8", errors="replace").strip("\x00 ")


# --- C2PA ---------------------------------------------------------------------------------

_local = threading.local()


def _c2pa_context() -> Any:
    """One c2pa Context per thread, with every network fetch off (the daemon stays offline)."""
    context = getattr(_local, "context", None)
    if context is None:
        import c2pa

        settings = c2pa.Settings.from_dict(
            {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        )
        context = _local.context = c2pa.Context(settings)
    return context


def _c2pa_findings(data: bytes, mime: str) -> list[Finding]:
    try:
        import c2pa
    except ImportError:
        return [Finding(Kind.ERROR, "C2PA manifest present; the c2pa package is missing", _IGN)]
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=_c2pa_context()) as reader:
            state = reader.get_validation_state() or "unknown"
            store = json.loads(reader.json())
    except Exception as exc:  # c2pa.C2paError for a broken manifest, anything from the library
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        return [Finding(Kind.ERROR, f"C2PA manifest unreadable: {reason}", _IGN)]
    return [_manifest_finding(store, str(state))]


def _manifest_finding(store: Any, state: str) -> Finding:
    manifests = store.get("manifests") if isinstance(store, dict) else None
    if not isinstance(manifests, dict) or not manifests:
        return Finding(Kind.ERROR, "C2PA manifest store without manifests", _IGN)
    active = manifests.get(store.get("active_manifest")) or next(iter(manifests.values()))
    valid = state in ("Valid", "Trusted")
    signature = {"Trusted": "valid, trusted signer", "Valid": "valid signature"}.get(
        state, f"signature does not validate ({state})"
    )
    # Any manifest in the store counts: an AI picture edited later keeps its origin in the
    # ingredient's manifest, not in the active one.
    actions = [pair for m in manifests.values() for pair in _source_types(m)]
    ai = next((a for a in actions if a[1] in AI_SOURCE_TYPES), None)
    chosen = ai or next(iter(actions), None)
    says = f"manifest by {_claim_generator(active)}, {signature}"
    if chosen is None:
        return Finding(Kind.C2PA, says, Strength.INFO)
    action, code = chosen
    finding = _source_type_finding(Kind.C2PA, code, f"{says}, {action} with source type")
    if not valid and finding.strength is Strength.DECLARES_AI:
        return Finding(Kind.C2PA, finding.says, Strength.HINT)  # a broken claim decides nothing
    return finding


def _claim_generator(manifest: Any) -> str:
    if not isinstance(manifest, dict):
        return "an unknown generator"
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name = str(info[0].get("name", "")).strip()
        version = str(info[0].get("version", "")).strip()
        if name:
            return f"{name} {version}".strip()[:60]
    generator = manifest.get("claim_generator")
    return str(generator)[:60] if generator else "an unknown generator"


def _source_types(manifest: Any) -> Iterator[tuple[str, str]]:
    """(action, IPTC code of its digital source type) for a manifest's actions that name one."""
    assertions = manifest.get("assertions") if isinstance(manifest, dict) else None
    for assertion in assertions if isinstance(assertions, list) else []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith(
            "c2pa.actions"
        ):
            continue
        data = assertion.get("data")
        actions = data.get("actions") if isinstance(data, dict) else None
        for action in actions if isinstance(actions, list) else []:
            if not isinstance(action, dict):
                continue
            source, name = action.get("digitalSourceType"), action.get("action")
            if isinstance(source, str) and source:
                name = name.removeprefix("c2pa.") if isinstance(name, str) else "action"
                yield name[:40], source.rstrip("/").rsplit("/", 1)[-1]
