"""Container walkers: the metadata blocks of JPEG, PNG and WebP files, found with bounds checks."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Final

from detector.provenance.findings import ProvenanceLimits

_PNG_SIGNATURE: Final[bytes] = b"\x89PNG\r\n\x1a\n"
_XMP_JPEG_NS: Final[bytes] = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_XMP_KEY: Final[str] = "XML:com.adobe.xmp"


@dataclass(slots=True)
class Blocks:
    """Raw metadata a container walker found, before interpretation."""

    mime: str | None = None
    exif: list[bytes] = field(default_factory=list)
    xmp: list[bytes] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    c2pa: bool = False


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


def walk(data: bytes, limits: ProvenanceLimits) -> Blocks:
    """The metadata blocks of these bytes, by their container format (bounded)."""
    blocks = Blocks(mime=sniff_mime(data))
    view = memoryview(data)
    if blocks.mime == "image/jpeg":
        _walk_jpeg(view, limits, blocks)
    elif blocks.mime == "image/png":
        _walk_png(view, limits, blocks)
    elif blocks.mime == "image/webp":
        _walk_webp(view, limits, blocks)
    elif blocks.mime is not None:
        _scan_generic(view, limits, blocks)
        if blocks.mime in ("image/heif", "image/avif"):
            _isobmff_exif(data, limits, blocks)
    return blocks


def _isobmff_exif(data: bytes, limits: ProvenanceLimits, out: Blocks) -> None:
    """HEIF/AVIF keep EXIF in an item of the container: read through the decoder's header
    parsing (no pixel is decoded), with the same size limit as every block."""
    from detector.imageio import open_image  # the HEIF plugin comes with it

    try:
        with open_image(data) as im:
            exif = im.info.get("exif")
    except Exception as exc:  # not readable: the decoder says why; metadata just is absent
        out.errors.append(f"the {out.mime} container could not be read ({type(exc).__name__})")
        return
    if isinstance(exif, bytes) and exif:
        _keep_block(out.exif, "EXIF block", memoryview(exif), limits, out)


def _walk_jpeg(view: memoryview, limits: ProvenanceLimits, out: Blocks) -> None:
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


def _jpeg_app1(head: bytes, payload: memoryview, out: Blocks) -> None:
    if head.startswith(b"Exif\x00\x00"):
        out.exif.append(bytes(payload[6:]))
    elif head.startswith(_XMP_JPEG_NS):
        out.xmp.append(bytes(payload[len(_XMP_JPEG_NS) :]))


def _walk_png(view: memoryview, limits: ProvenanceLimits, out: Blocks) -> None:
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


def _png_text(ctype: bytes, body: memoryview, limits: ProvenanceLimits, out: Blocks) -> None:
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


def _walk_webp(view: memoryview, limits: ProvenanceLimits, out: Blocks) -> None:
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


def _scan_generic(view: memoryview, limits: ProvenanceLimits, out: Blocks) -> None:
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
    into: list[bytes], what: str, body: memoryview, limits: ProvenanceLimits, out: Blocks
) -> None:
    if len(body) > limits.max_block_bytes:
        out.errors.append(f"{what} of {len(body):,} bytes over the limit; not read")
    else:
        into.append(bytes(body))
