"""HEIC/HEIF (iPhone photos) and AVIF: decoded like every other format, with their metadata.

The tests make their files themselves (pillow-heif writes HEIC, Pillow writes AVIF).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detector.errors import ImageRejected
from detector.imageio import LoadLimits, decode, decode_picture
from detector.provenance import declaring_ai, read_provenance
from detector.provenance.findings import Kind
from tests.provenance_files import exif, xmp

FORMATS = ("HEIF", "AVIF")
RED = (230, 20, 20)


def _picture(width: int = 96, height: int = 64) -> Image.Image:
    """Left half red, right half grey: where the red ends up shows the orientation."""
    rgb = np.full((height, width, 3), 128, np.uint8)
    rgb[:, : width // 2] = RED
    return Image.fromarray(rgb)


def _encode(fmt: str, image: Image.Image | None = None, **save: Any) -> bytes:
    out = io.BytesIO()
    (image or _picture()).save(out, fmt, quality=90, **save)
    return out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoded_like_any_picture(fmt: str) -> None:
    decoded = decode(_encode(fmt), 32, LoadLimits())
    assert decoded.format == fmt and (decoded.source_width, decoded.source_height) == (96, 64)
    left, right = decoded.pixels[16, 4].astype(int), decoded.pixels[16, 28].astype(int)
    assert left[0] > 180 and left[1] < 80 and abs(int(right[0]) - 128) < 25


@pytest.mark.parametrize("fmt", FORMATS)
def test_exif_orientation_is_applied_once(fmt: str) -> None:
    tags = Image.Exif()
    tags[0x0112] = 6  # rotate 90 degrees clockwise to display
    picture = decode_picture(_encode(fmt, exif=tags.tobytes()), None, LoadLimits())
    assert picture.rgb.shape[:2] == (96, 64)  # displayed upright: tall
    assert (picture.source_width, picture.source_height) == (64, 96)
    top, bottom = picture.rgb[4, 32].astype(int), picture.rgb[91, 32].astype(int)
    # The left half (red) of the stored picture is the top half once turned clockwise.
    assert top[0] > 180 and top[1] < 80 and abs(int(bottom[0]) - 128) < 25


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_pixel_and_byte_limits_hold(fmt: str) -> None:
    data = _encode(fmt, _picture(200, 100))
    with pytest.raises(ImageRejected) as too_many:
        decode(data, 32, LoadLimits(max_pixels=10_000))
    assert too_many.value.code == "too_many_pixels"
    with pytest.raises(ImageRejected) as too_large:
        decode(data, 32, LoadLimits(max_bytes=len(data) - 1))
    assert too_large.value.code == "too_large"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_file_is_rejected_with_its_reason(fmt: str) -> None:
    data = _encode(fmt, _picture(256, 256))
    for cut in (len(data) // 2, len(data) - 40):
        with pytest.raises(ImageRejected) as rejected:
            decode(data[:cut], 32, LoadLimits())
        assert rejected.value.code in ("truncated", "unreadable", "not_an_image")
        assert rejected.value.reason


def test_a_sequence_gives_its_first_picture() -> None:
    first, second = _picture(), Image.new("RGB", (96, 64), (20, 20, 230))
    data = _encode("HEIF", first, save_all=True, append_images=[second])
    decoded = decode(data, 32, LoadLimits())
    assert decoded.pixels[16, 4, 0] > 180  # red: the first (primary) picture


@pytest.mark.parametrize("fmt", FORMATS)
def test_provenance_is_read_from_the_containers(fmt: str) -> None:
    declared = _encode(fmt, xmp=xmp("trainedAlgorithmicMedia"))
    finding = declaring_ai(read_provenance(declared))
    assert finding is not None and finding.kind == Kind.XMP
    camera = read_provenance(_encode(fmt, exif=exif(make="Apple", model="iPhone 15")))
    assert any(f.kind == Kind.EXIF and "iPhone 15" in f.says for f in camera), camera
    assert declaring_ai(camera) is None


def test_a_damaged_heic_reason_is_one_line() -> None:
    # Found by the fuzz campaign (benchmarks/fuzz.py): libheif's messages end in a newline.
    data = _encode("HEIF", _picture(256, 256))
    with pytest.raises(ImageRejected) as rejected:
        decode(data[: len(data) // 2], 32, LoadLimits())
    assert (
        "\n" not in rejected.value.reason and rejected.value.reason.strip() == rejected.value.reason
    )
