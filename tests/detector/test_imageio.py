"""decode(): every kind of bad or unusual input a face inbox can receive, made for real."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from detector.errors import ImageRejected
from detector.imageio import DecodedImage, LoadLimits, decode, sha256_bytes

LIMITS = LoadLimits()
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    """Encode an in-memory image to bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noisy(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A textured RGB image, so encoders produce realistic amounts of data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def rejected(data: bytes, size: int = 32, limits: LoadLimits = LIMITS) -> ImageRejected:
    """The ImageRejected raised by decode (fails the test when nothing is raised)."""
    with pytest.raises(ImageRejected) as info:
        decode(data, size, limits)
    return info.value


def assert_colour(decoded: DecodedImage, colour: tuple[int, int, int], tol: int = 6) -> None:
    """Every pixel is within `tol` of `colour`."""
    diff = np.abs(decoded.pixels.astype(int) - np.array(colour)).max()
    assert diff <= tol, f"max channel difference {diff} from {colour}"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(side: int) -> bytes:
    """A real 1-bit PNG of side x side black pixels: megapixels that compress to kilobytes."""
    row = b"\x00" + bytes((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


# --- the happy path -------------------------------------------------------------------------


def test_decode_returns_square_rgb_uint8_with_source_facts() -> None:
    data = encode(Image.new("RGB", (64, 48), GREEN), "JPEG", quality=95)
    decoded = decode(data, 32, LIMITS)
    assert decoded.pixels.shape == (32, 32, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.flags.c_contiguous and decoded.pixels.flags.writeable
    assert (decoded.source_width, decoded.source_height, decoded.format) == (64, 48, "JPEG")
    assert_colour(decoded, GREEN, tol=8)


def test_centre_crop_keeps_the_middle_square() -> None:
    image = Image.new("RGB", (90, 30), RED)
    image.paste(GREEN, (30, 0, 60, 30))
    image.paste(BLUE, (60, 0, 90, 30))
    assert_colour(decode(encode(image, "PNG"), 30, LIMITS), GREEN, tol=0)
    tall = image.transpose(Image.Transpose.ROTATE_90)
    assert_colour(decode(encode(tall, "PNG"), 30, LIMITS), GREEN, tol=0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode_and_report_their_format(fmt: str) -> None:
    decoded = decode(encode(Image.new("RGB", (40, 40), BLUE), fmt), 16, LIMITS)
    assert decoded.format == fmt
    assert_colour(decoded, BLUE, tol=10)


def test_upscaling_small_images_works() -> None:
    decoded = decode(encode(Image.new("RGB", (8, 8), RED), "PNG"), 64, LIMITS)
    assert decoded.pixels.shape == (64, 64, 3)
    assert_colour(decoded, RED, tol=0)


def test_large_jpeg_uses_the_same_result_every_time(image_factory: Callable[..., Path]) -> None:
    # 1200x900 >= 2x the target: the draft (reduced DCT) path is taken.
    path = image_factory("big.jpg", size=(1200, 900), color=(200, 40, 90))
    data = path.read_bytes()
    first = decode(data, 64, LIMITS)
    assert (first.source_width, first.source_height) == (1200, 900)
    assert_colour(first, (200, 40, 90), tol=10)
    np.testing.assert_array_equal(first.pixels, decode(data, 64, LIMITS).pixels)


def test_draft_path_stays_close_to_a_full_decode() -> None:
    image = noisy((64, 64)).resize((1024, 1024), Image.Resampling.BICUBIC)
    data = encode(image, "JPEG", quality=92)
    via_draft = decode(data, 128, LIMITS).pixels.astype(float)
    reference = np.asarray(image.resize((128, 128), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(via_draft - reference).mean() < 6.0


def test_large_jpeg_is_decoded_through_draft() -> None:
    # draft() decodes the DCT at reduced scale: the result differs (slightly) from a full decode
    # followed by the same resize. Equality would mean the fast path is not taken.
    image = noisy((64, 64)).resize((1024, 1024), Image.Resampling.BICUBIC)
    data = encode(image, "JPEG", quality=92)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    reference = np.asarray(full.resize((64, 64), Image.Resampling.BILINEAR))
    assert not np.array_equal(decode(data, 64, LIMITS).pixels, reference)
    # Below 2x the target there is no draft: identical to the full decode.
    small = encode(noisy((100, 100)), "JPEG")
    full_small = Image.open(io.BytesIO(small)).convert("RGB")
    np.testing.assert_array_equal(
        decode(small, 64, LIMITS).pixels,
        np.asarray(full_small.resize((64, 64), Image.Resampling.BILINEAR)),
    )


def test_mpo_camera_jpeg_is_reported_as_jpeg() -> None:
    frames = [Image.new("RGB", (40, 40), RED), Image.new("RGB", (40, 40), BLUE)]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    decoded = decode(data, 16, LIMITS)
    assert decoded.format == "JPEG"
    assert_colour(decoded, RED, tol=10)


# --- modes ----------------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert_colour(decode(data, 16, LIMITS), RED, tol=8)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    image = Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16))
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    # 40000 / 65535 * 255 = 155.6; clipping at 255 would give white.
    assert_colour(decode(data, 16, LIMITS), (156, 156, 156), tol=0)


def test_sixteen_bit_png_keeps_its_gradient() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    decoded = decode(encode(Image.fromarray(ramp), "PNG"), 64, LIMITS)
    row = decoded.pixels[32, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253
    assert np.all(np.diff(row) >= 0)


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([*RED, *BLUE] + [0] * 762)
    image.paste(1, (0, 0, 20, 10))  # top half blue, bottom half transparent red
    decoded = decode(encode(image, "PNG", transparency=0), 20, LIMITS)
    assert tuple(decoded.pixels[2, 10]) == BLUE
    assert tuple(decoded.pixels[17, 10]) == WHITE


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("RGBA", (255, 0, 0, 0), WHITE),
        ("RGBA", (255, 0, 0, 255), RED),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
        ("LA", (0, 128), (127, 127, 127)),
    ],
)
def test_alpha_is_composited_on_white(
    mode: str, colour: tuple[int, ...], expected: tuple[int, int, int]
) -> None:
    decoded = decode(encode(Image.new(mode, (20, 20), colour), "PNG"), 16, LIMITS)
    assert_colour(decoded, expected, tol=1)


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.new("1", (20, 20), 1), "PNG"),
        (Image.new("L", (20, 20), 255), "PNG"),
        (Image.new("I", (20, 20), 65535), "TIFF"),
        (Image.fromarray(np.ones((20, 20), dtype=np.float32)), "TIFF"),
        (Image.new("CMYK", (20, 20), (0, 0, 0, 0)), "TIFF"),
        (Image.new("RGBA", (20, 20), (255, 255, 255, 255)), "WEBP"),
    ],
    ids=["1", "L", "I", "F", "CMYK-tiff", "RGBA-webp"],
)
def test_every_mode_becomes_white_rgb(image: Image.Image, fmt: str) -> None:
    decoded = decode(encode(image, fmt), 16, LIMITS)
    assert decoded.pixels.shape == (16, 16, 3) and decoded.pixels.dtype == np.uint8
    assert_colour(decoded, WHITE, tol=1)


# --- orientation and animation ---------------------------------------------------------------


def test_exif_orientation_is_applied(image_factory: Callable[..., Path]) -> None:
    # Stored 80x40: left half red, right half blue. Orientation 6 displays it rotated 90 degrees
    # clockwise (40x80): red on top. The crop's top-right corner is red only if it was applied.
    image = Image.new("RGB", (80, 40), BLUE)
    image.paste(RED, (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = image_factory("rotated.jpg")
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode(path.read_bytes(), 32, LIMITS)
    assert (decoded.source_width, decoded.source_height) == (40, 80)
    top_right, bottom_left = decoded.pixels[1, 30], decoded.pixels[30, 1]
    assert np.abs(top_right.astype(int) - RED).max() < 40, top_right
    assert np.abs(bottom_left.astype(int) - BLUE).max() < 40, bottom_left


def test_corrupt_exif_is_ignored() -> None:
    data = encode(Image.new("RGB", (20, 20), RED), "JPEG", exif=b"Exif\x00\x00garbage!")
    assert_colour(decode(data, 16, LIMITS), RED, tol=8)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert_colour(decode(data, 16, LIMITS), RED, tol=4)


# --- rejections ---------------------------------------------------------------------------


def test_empty_data_is_rejected() -> None:
    assert rejected(b"").code == "empty"


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, -2])
def test_truncated_jpeg_is_rejected(progressive: bool, keep: float) -> None:
    data = encode(noisy((200, 150)), "JPEG", quality=90, progressive=progressive)
    cut = data[:keep] if isinstance(keep, int) else data[: int(len(data) * keep)]
    error = rejected(cut)
    assert error.code == "truncated", error.reason
    assert str(error) == error.reason


@pytest.mark.parametrize("keep", [0.3, 0.9, -12])
def test_truncated_png_is_rejected(keep: float) -> None:
    data = encode(noisy((120, 90)), "PNG")
    cut = data[:keep] if isinstance(keep, int) else data[: int(len(data) * keep)]
    assert rejected(cut).code == "truncated"


def test_truncated_webp_and_gif_are_rejected() -> None:
    webp = encode(noisy((120, 90)), "WEBP")
    assert rejected(webp[: len(webp) // 2]).code == "truncated"
    gif = encode(noisy((120, 90)), "GIF")
    assert rejected(gif[: len(gif) // 2]).code == "truncated"


def test_truncated_images_stay_fatal_even_if_someone_enabled_loading_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(noisy((200, 150)), "JPEG")
    assert rejected(data[: len(data) // 2]).code == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"just some text that someone renamed to .jpg\n" * 3, "text"),
        (b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>", "HTML"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(120), "ELF"),
        (b"%PDF-1.7\n" + bytes(64), "PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (bytes(range(256)) * 4, "binary"),
        (b"\x00\x01\x02" + bytes(64), "binary"),  # TGA-like prefix: no permissive plugin
    ],
    ids=["text", "html", "elf", "pdf", "svg", "binary", "tga-like"],
)
def test_non_images_are_rejected(data: bytes, hint: str) -> None:
    error = rejected(data)
    assert error.code == "not_an_image"
    assert hint in error.reason


def test_formats_outside_the_accepted_list_are_refused() -> None:
    # A real TGA file: Pillow would open it, but TGA has no magic number, and letting its
    # permissive detector run would turn arbitrary bytes into "images".
    tga = encode(Image.new("RGB", (16, 16), RED), "TGA")
    assert Image.open(io.BytesIO(tga)).format == "TGA"
    assert rejected(tga).code == "not_an_image"


def test_heic_without_plugin_is_unsupported() -> None:
    if "HEIF" in Image.OPEN:
        pytest.skip("a HEIF plugin is registered in this environment")
    data = struct.pack(">I", 24) + b"ftypheic" + bytes(4) + b"mif1heic" + bytes(200)
    error = rejected(data)
    assert error.code == "unsupported_format"
    assert "HEIF" in error.reason


def test_avif_decodes_or_is_clearly_unsupported() -> None:
    data = (
        encode(Image.new("RGB", (32, 32), RED), "AVIF", quality=95)
        if features.check("avif")
        else struct.pack(">I", 28) + b"ftypavif" + bytes(4) + b"avifmif1miaf" + bytes(64)
    )
    if features.check("avif"):
        assert_colour(decode(data, 16, LIMITS), RED, tol=12)
    else:
        assert rejected(data).code == "unsupported_format"


def test_isobmff_detection_does_not_claim_other_containers() -> None:
    mp4 = struct.pack(">I", 24) + b"ftypisom" + bytes(4) + b"isomavc1" + bytes(64)
    assert rejected(mp4).code == "not_an_image"


def test_pixel_bomb_is_rejected_from_the_header() -> None:
    data = bomb_png(8000)  # 64 megapixels in a few kilobytes
    assert len(data) < 20_000
    error = rejected(data)
    assert error.code == "too_many_pixels"
    assert "8000x8000" in error.reason


def test_huge_bomb_is_rejected_even_with_a_generous_limit() -> None:
    data = bomb_png(30000)  # 900 megapixels: Pillow's own bomb guard fires first
    error = rejected(data, limits=LoadLimits(max_pixels=10**10))
    assert error.code == "too_many_pixels"


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (20, 20), RED), "PNG")
    assert rejected(data, limits=LoadLimits(max_pixels=399)).code == "too_many_pixels"
    assert decode(data, 8, LoadLimits(max_pixels=400)).pixels.shape == (8, 8, 3)


def test_too_many_bytes_is_rejected() -> None:
    data = encode(noisy((64, 64)), "PNG")
    error = rejected(data, limits=LoadLimits(max_bytes=len(data) - 1))
    assert error.code == "too_large"
    assert decode(data, 8, LoadLimits(max_bytes=len(data))).pixels.shape == (8, 8, 3)


def test_corrupt_image_data_is_unreadable_or_truncated() -> None:
    data = bytearray(encode(noisy((64, 64)), "PNG"))
    data[100:140] = b"\xff" * 40  # damage the compressed stream, CRCs no longer match
    assert rejected(bytes(data)).code in {"unreadable", "truncated"}


def test_invalid_target_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="size"):
        decode(b"x", 0, LIMITS)


# --- concurrency and hashing --------------------------------------------------------------


def test_decode_is_thread_safe() -> None:
    inputs = [encode(noisy((300 + 7 * i, 260), seed=i), "JPEG") for i in range(12)]
    expected = [decode(data, 48, LIMITS).pixels for data in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            results = list(pool.map(lambda d: decode(d, 48, LIMITS).pixels, inputs))
            for got, want in zip(results, expected, strict=True):
                np.testing.assert_array_equal(got, want)


def test_sha256_bytes() -> None:
    assert sha256_bytes(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize(
    ("mode", "fmt", "orientation"),
    [("RGB", "JPEG", 1), ("RGB", "JPEG", 6), ("RGBA", "PNG", 1), ("L", "PNG", 1),
     ("P", "GIF", 1), ("RGB", "WEBP", 1)],
)  # fmt: skip
def test_a_picture_stays_the_decoders_rgb_image_and_its_array_is_that_image(
    mode: str, fmt: str, orientation: int
) -> None:
    # Views read the Pillow image the decoder made (no 12-megapixel numpy round trip); the
    # array callers ask for is exactly its pixels, and the whole view is the same from either.
    from detector.imageio import decode_picture, whole_view

    noise = np.random.default_rng(2).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    image = Image.fromarray(noise).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, fmt, exif=exif.tobytes()) if fmt == "JPEG" else encode(image, fmt)
    picture = decode_picture(data, None, LIMITS)
    assert picture.image.mode == "RGB"
    rgb = picture.rgb
    assert rgb.shape == (picture.source_height, picture.source_width, 3)
    assert np.array_equal(np.asarray(picture.image), rgb)
    assert np.array_equal(whole_view(picture.image, 64), whole_view(Image.fromarray(rgb), 64))
