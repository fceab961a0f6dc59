"""What XMP packets, PNG text chunks and EXIF blocks say about an image's origin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

from detector.provenance.findings import (
    DECLARES,
    IGNORED,
    Finding,
    Kind,
    Strength,
    software_finding,
    source_type_finding,
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
_SD_PARAMS_RE: Final = re.compile(r"\b(Steps|Sampler|CFG scale|Seed): ")
_SD_MODEL_RE: Final = re.compile(r"\bModel: ([^,\n]{1,60})")
_EXIF_SOFTWARE, _EXIF_MAKE, _EXIF_MODEL = 0x0131, 0x010F, 0x0110
_EXIF_DESCRIPTION, _EXIF_IFD, _EXIF_USER_COMMENT = 0x010E, 0x8769, 0x9286


# --- XMP ----------------------------------------------------------------------------------


def xmp_findings(packet: bytes) -> Iterator[Finding]:
    """The IPTC digital source type and creator tool of one XMP packet (never parsed as XML)."""
    text = packet.decode("utf-8", errors="replace")
    if "<!ENTITY" in text or "<!DOCTYPE" in text:
        # XMP never needs a DTD; one that declares entities is an expansion attack.
        yield Finding(Kind.ERROR, "XMP packet declares a DTD or entities; not read", IGNORED)
        return
    for match in list(_XMP_SOURCE_RE.finditer(text))[:8]:
        code = _SOURCE_TYPE_RE.search(text, match.end(), match.end() + 300)
        if code is not None:
            yield source_type_finding(Kind.XMP, code.group(1), "IPTC digital source type")
    creator = _XMP_CREATOR_RE.search(text)
    if creator is not None:
        tool = (creator.group(1) or creator.group(2) or "").strip()
        if tool:
            yield software_finding(Kind.XMP, "creator tool", tool)


# --- PNG text chunks of generator UIs -----------------------------------------------------


def text_finding(key: str, text: str) -> Finding | None:
    """What one PNG text chunk says about the generator UI that wrote it, or None."""
    lowered = key.strip().lower()
    if lowered == "parameters":
        return _sd_parameters(text)
    if lowered in _GENERATOR_KEYS:
        ui, marker = _GENERATOR_KEYS[lowered]
        if marker is None or marker in text:
            return Finding(Kind.PNG_TEXT, f"{ui} generation data ({key!r} chunk)", DECLARES)
        return Finding(Kind.PNG_TEXT, f"{key!r} chunk of the kind {ui} writes", Strength.HINT)
    if lowered == "comment" and '"steps"' in text and ('"sampler"' in text or '"seed"' in text):
        return Finding(Kind.PNG_TEXT, "NovelAI generation settings ('Comment' chunk)", DECLARES)
    if lowered in ("software", "source"):
        return software_finding(Kind.PNG_TEXT, key.lower(), text)
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
        return Finding(Kind.PNG_TEXT, f"Stable Diffusion WebUI parameters{extra}", DECLARES)
    if text.lstrip().startswith("{") and '"prompt"' in text:
        return Finding(Kind.PNG_TEXT, "Fooocus generation parameters", DECLARES)
    return Finding(
        Kind.PNG_TEXT, "'parameters' chunk of the kind generator UIs write", Strength.HINT
    )


# --- EXIF ---------------------------------------------------------------------------------


def exif_findings(block: bytes) -> Iterator[Finding]:
    """Software, camera Make/Model and A1111 parameters in one EXIF block."""
    from PIL import Image

    if block.startswith(b"Exif\x00\x00"):
        block = block[6:]
    exif = Image.Exif()
    try:
        exif.load(block)
        tags = dict(exif.items())
        tags.update(exif.get_ifd(_EXIF_IFD).items())
    except Exception as exc:  # Pillow raises many kinds on hostile TIFF structures
        yield Finding(Kind.ERROR, f"EXIF unreadable ({type(exc).__name__})", IGNORED)
        return
    for tag in (_EXIF_USER_COMMENT, _EXIF_DESCRIPTION):
        text = _exif_text(tags.get(tag))
        if text and len(_SD_PARAMS_RE.findall(text[:20_000])) >= 2:
            yield Finding(Kind.EXIF, "Stable Diffusion WebUI parameters in EXIF", DECLARES)
            break
    software = _exif_text(tags.get(_EXIF_SOFTWARE))
    if software:
        yield software_finding(Kind.EXIF, "software", software)
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
