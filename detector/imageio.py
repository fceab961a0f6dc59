"""Safe image loading: THE single decode path shared by training and serving.

Every input is untrusted: size is checked before reading, the pixel count is checked from the
header before any pixel is decoded, and every failure becomes an `ImageRejected` with a code.
Training calls `decode` too, so the exact pixels the model was trained on are the ones it serves.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from detector.errors import ImageRejected

logger = logging.getLogger(__name__)

# HEIC/HEIF through libheif (Pillow itself reads AVIF). libheif applies the container's
# rotation and mirroring, and pillow-heif then sets the EXIF orientation to 1, so orientation is
# applied exactly once either way.
pillow_heif.register_heif_opener()

# Formats we accept. Restricting Image.open to these stops permissive plugins (TGA, PCD, ...)
# from "identifying" arbitrary bytes as an image. HEIF only counts when a plugin registered it.
ACCEPTED_FORMATS: Final[tuple[str, ...]] = (
    "JPEG",
    "MPO",
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "TIFF",
    "AVIF",
    "HEIF",
)
# Bumped whenever decode() would produce different pixels for the same bytes, so that caches
# of decoded training images (keyed on it) are invalidated.
DECODER_VERSION: Final[int] = 2
# One fixed filter for every resize, so training and serving cannot drift apart.
RESAMPLE: Final = Image.Resampling.BILINEAR
_READ_CHUNK: Final[int] = 1 << 20
_WHITE: Final[tuple[int, int, int]] = (255, 255, 255)
_ALPHA_MODES: Final[frozenset[str]] = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES: Final[frozenset[str]] = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_HEIF_BRANDS: Final[frozenset[bytes]] = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS: Final[frozenset[bytes]] = frozenset({b"avif", b"avis"})
# Orientations that swap width and height (90/270 degree rotations and transpositions).
_SWAPPING_ORIENTATIONS: Final[frozenset[int]] = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION: Final[int] = 0x0112
_PNG_SIGNATURE: Final[bytes] = b"\x89PNG\r\n\x1a\n"
_PNG_IEND: Final[bytes] = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """Resource limits applied before any pixel is decoded."""

    max_bytes: int = 50_000_000
    max_pixels: int = 40_000_000


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded, square, RGB image ready for the model."""

    pixels: np.ndarray  # (size, size, 3) uint8 RGB
    source_width: int  # as displayed, i.e. after EXIF orientation
    source_height: int
    format: str  # "JPEG", "PNG", ... (MPO camera JPEGs are reported as "JPEG")


@dataclass(frozen=True, slots=True)
class Picture:
    """A decoded RGB picture at decode resolution (JPEGs reduced in the DCT when large).

    It stays a Pillow image: the views read a reduced copy and small regions of it, and a
    12-megapixel photo turned into one numpy array costs 18 ms and 36 MB that nothing needs.
    """

    image: Image.Image  # mode "RGB", EXIF orientation applied
    source_width: int  # as displayed, i.e. after EXIF orientation
    source_height: int
    format: str

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, read-only: the whole picture as one array (a copy per call)."""
        return np.asarray(self.image)

    @property
    def scale(self) -> float:
        """Source pixels per decoded pixel (1.0 unless the decoder reduced the picture)."""
        return self.source_width / max(self.image.width, 1)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of the given bytes."""
    return hashlib.sha256(data).hexdigest()


def read_file(path: Path, limits: LoadLimits) -> bytes:
    """Read a regular file whole, never more than `limits.max_bytes + 1` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang the worker waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise ImageRejected(
            "vanished", f"file disappeared before it could be read: {path}"
        ) from exc
    except IsADirectoryError as exc:
        raise ImageRejected("not_a_file", f"not a regular file: {path}") from exc
    except OSError as exc:
        raise ImageRejected("unreadable", f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        # fstat on the open descriptor, not stat on the path: no race with a swapped file.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageRejected("not_a_file", f"not a regular file: {path}")
        _check_size(st.st_size, limits)
        data = _read_at_most(fd, limits.max_bytes + 1, path, first=st.st_size + 1)
    finally:
        os.close(fd)
    # The file may have grown between fstat and read.
    _check_size(len(data), limits)
    return data


def _check_size(size: int, limits: LoadLimits) -> None:
    if size > limits.max_bytes:
        raise ImageRejected(
            "too_large", f"file is {size:,} bytes, more than the limit of {limits.max_bytes:,}"
        )


def _read_at_most(fd: int, limit: int, path: Path, first: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    # One read of the known size (+1 to notice growth) usually gets everything without copies.
    request = max(first, 1)
    try:
        while remaining > 0:
            chunk = os.read(fd, min(request, remaining))
            request = _READ_CHUNK
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESTALE):  # e.g. deleted on an NFS share
            raise ImageRejected("vanished", f"file disappeared while reading: {path}") from exc
        raise ImageRejected("unreadable", f"cannot read {path}: {exc.strerror or exc}") from exc
    return b"".join(chunks)


def load_image(path: Path, size: int, limits: LoadLimits) -> DecodedImage:
    """Read and decode one image file (read_file + decode)."""
    return decode(read_file(path, limits), size, limits)


def decode(data: bytes, size: int, limits: LoadLimits) -> DecodedImage:
    """Decode untrusted bytes to a (size, size, 3) uint8 RGB centre-cropped square."""
    picture = decode_picture(data, size, limits)
    return DecodedImage(
        pixels=whole_view(picture.image, size),
        source_width=picture.source_width,
        source_height=picture.source_height,
        format=picture.format,
    )


def whole_view(image: Image.Image, size: int) -> np.ndarray:
    """The centre square of an RGB picture resized to (size, size, 3): the model's whole view."""
    pixels = np.array(image.resize((size, size), RESAMPLE, box=_centre_square(image.size)))
    if pixels.shape != (size, size, 3) or pixels.dtype != np.uint8:
        raise ImageRejected("unreadable", f"decoder produced {pixels.dtype} {pixels.shape}")
    return pixels


def decode_picture(data: bytes, work_size: int | None, limits: LoadLimits) -> Picture:
    """Decode untrusted bytes to RGB; JPEGs at least twice `work_size` are reduced on decode
    (None: full resolution, always)."""
    if work_size is not None and work_size <= 0:
        raise ValueError(f"size must be positive, got {work_size}")
    if not data:
        raise ImageRejected("empty", "the file is empty (0 bytes)")
    _check_size(len(data), limits)
    _keep_truncated_images_fatal()
    _check_complete(data)
    try:
        return _decode_opened(open_image(data), work_size, limits)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", f"decompression bomb refused: {exc}") from exc
    except Exception as exc:  # any Pillow/codec failure is a bad input, not a crash
        raise _classify_decode_error(exc) from exc


def _keep_truncated_images_fatal() -> None:
    # A truncated file decoded with grey filler would get a confident but meaningless score.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        logger.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was enabled; turning it off")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def open_image(data: bytes) -> ImageFile.ImageFile:
    """Pillow's lazy open of untrusted bytes, restricted to the accepted formats (headers are
    read, no pixel is decoded); ImageRejected when they are no such image."""
    Image.init()  # idempotent; makes late-registered plugins (e.g. HEIF) visible
    formats = tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as exc:
        container = _isobmff_image_kind(data)
        if container is not None and container.split("/")[0] in formats:
            # The decoder is there and could not read the container: a damaged file.
            raise ImageRejected(
                "truncated", f"the {container} data is incomplete or damaged ({len(data):,} bytes)"
            ) from exc
        if container is not None:
            raise ImageRejected(
                "unsupported_format",
                f"{container} images are not supported by this installation "
                "(no decoder plugin available)",
            ) from exc
        raise ImageRejected(
            "not_an_image", f"not an image in a supported format ({describe_bytes(data)})"
        ) from exc


def _isobmff_image_kind(data: bytes) -> str | None:
    """'HEIF' or 'AVIF' when the bytes are an ISO-BMFF image container, else None."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(data[0:4], "big")
    end = min(max(box_size, 16), len(data), 4096)
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF/HEIC"
    return None


def describe_bytes(data: bytes) -> str:
    """A short human description of what unidentified bytes look like."""
    head = data[:512]
    if head.startswith(b"\x7fELF"):
        return "looks like an ELF executable"
    if head.startswith(b"%PDF"):
        return "looks like a PDF document"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return "looks like a compressed archive"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return "looks like an HTML page"
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<svg"):
        return "looks like XML/SVG (vector images are not supported)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"  # not UTF-8: describe as binary below
    if "\x00" in text:
        return f"unrecognised binary data, first bytes {data[:8].hex()}"
    return "looks like text"


def _decode_opened(im: ImageFile.ImageFile, size: int | None, limits: LoadLimits) -> Picture:
    width, height = im.size
    # Checked from the header, before a single pixel is decoded.
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"image is {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {limits.max_pixels:,}",
        )
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    if fmt == "JPEG" and size is not None and min(width, height) >= 2 * size:
        # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT: 3-5x faster for big photos.
        # It changes pixels, which is fine: training goes through this same function.
        im.draft("RGB", (size, size))
    im.load()  # first frame only for animations; raises on truncated data
    orientation = _orientation(im)
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    image = _to_rgb(_apply_orientation(im, orientation))
    if image is not im:
        # Closing frees the opened image's pixels: only when the picture is a converted copy.
        # When it is the opened image itself, it stays open: its "file" is the bytes already in
        # memory, and a copy would cost 4-30 ms and 48 MB for a 12-megapixel photo.
        im.close()
    if image.mode != "RGB" or min(image.size) < 1:
        raise ImageRejected("unreadable", f"decoder produced a {image.mode} {image.size} image")
    return Picture(image=image, source_width=width, source_height=height, format=fmt)


def _check_complete(data: bytes) -> None:
    """Catch truncations Pillow tolerates or misreports: PNG without IEND, short WebP."""
    kind = ""
    if data.startswith(_PNG_SIGNATURE) and data.rfind(_PNG_IEND) < 0:
        # The pixels may all be there, but a missing IEND means the writer had not finished.
        kind = "PNG"
    elif _is_webp(data) and len(data) < int.from_bytes(data[4:8], "little") + 8:
        # libwebp only says "could not create decoder object" for a short file.
        kind = "WebP"
    if kind:
        raise ImageRejected("truncated", f"the {kind} data is incomplete ({len(data):,} bytes)")


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block should not cost us the image
        logger.debug("ignoring unreadable EXIF block", exc_info=True)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    if orientation == 1:
        return im  # the common case: skip exif_transpose's copy
    transposed = ImageOps.exif_transpose(im)
    return transposed if transposed is not None else im


def _centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return (left, top, left + side, top + side)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _wide_gray_to_rgb(im)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _wide_gray_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit grayscale -> 8-bit by scaling the full range (not clipping at 255)."""
    values = np.asarray(im)
    if im.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        # Float images are conventionally 0..1; anything larger is treated like 16-bit.
        peak = float(values.max(initial=0.0))
        scale = 255.0 if peak <= 1.0 else (1.0 if peak <= 255.0 else 255.0 / 65535.0)
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    else:
        # uint32 holds 65535 * 255; half the memory of int64 on a 40-megapixel scan.
        wide = np.clip(values, 0, 65535).astype(np.uint32)
        # 'I' images holding 8-bit values (some TIFFs) stay as they are.
        if im.mode == "I" and int(wide.max(initial=0)) <= 255:
            gray = wide.astype(np.uint8)
        else:
            gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def _classify_decode_error(exc: Exception) -> ImageRejected:
    # One line: codecs' messages may carry newlines (libheif's do), and reasons are listed.
    message = " ".join(str(exc).split()) or type(exc).__name__
    lowered = message.lower()
    truncation_hints = ("truncated", "premature end", "unexpected end", "end of file")
    if isinstance(exc, EOFError) or any(hint in lowered for hint in truncation_hints):
        return ImageRejected("truncated", f"the image data is incomplete: {message}")
    return ImageRejected("unreadable", f"the image could not be decoded: {message}")
