"""Test pictures for the benchmarks: real faces when the dataset is there, synthetic ones
otherwise; JPEG, and HEIC for the phone photos.

Each copy gets a unique JPEG COM (comment) segment, or a trailing ISOBMFF `free` box in a HEIC
file: the pixels stay identical but every file has its own sha256, so the pipeline's sha256
dedup cannot skip the model for repeated images.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "faces"
JPEG_QUALITY = 90
# Files older than the watcher's quiet period count as complete at start-up.
BACKDATE_S = 120.0


def dataset_sources(root: Path, count: int) -> list[Image.Image]:
    """Up to `count` face images from the dataset's test split, both classes interleaved."""
    per_class = [sorted((root / "test" / cls).glob("*.jpg")) for cls in ("0", "1")]
    chosen: list[Path] = []
    for pair in zip(*per_class, strict=False):
        chosen.extend(pair)
        if len(chosen) >= count:
            break
    images = []
    for path in chosen[:count]:
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    return images


def synthetic_sources(count: int, seed: int = 7) -> list[Image.Image]:
    """Noise-textured images with a bright oval 'face': same JPEG cost as photos, no data."""
    rng = np.random.default_rng(seed)
    side = 256
    yy, xx = np.mgrid[0:side, 0:side]
    oval = ((xx - side / 2) / (side * 0.3)) ** 2 + ((yy - side / 2) / (side * 0.4)) ** 2 < 1.0
    images = []
    for _ in range(count):
        base = rng.normal(110, 40, (side, side, 3)) + rng.uniform(-30, 30, 3)
        base[oval] += 60
        images.append(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)))
    return images


def source_images(count: int, dataset: Path = DATASET) -> tuple[list[Image.Image], str]:
    """`count` source images and where they came from ('dataset' or 'synthetic')."""
    if (dataset / "test").is_dir():
        images = dataset_sources(dataset, count)
        if images:
            return images, f"dataset {dataset}"
    logger.warning("dataset %s not found; using synthetic noise faces", dataset)
    return synthetic_sources(count), "synthetic noise faces"


def encode_variant(image: Image.Image, side: int) -> bytes:
    """Centre-crop to square, resize (upscale for 1024 px) and encode as a JPEG."""
    w, h = image.size
    edge = min(w, h)
    box = ((w - edge) // 2, (h - edge) // 2, (w - edge) // 2 + edge, (h - edge) // 2 + edge)
    resized = image.crop(box).resize((side, side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    resized.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def photo_variant(
    images: Sequence[Image.Image], first: int, size: tuple[int, int], fmt: str = "JPEG"
) -> bytes:
    """A group photo of `size` px: three faces (about 400 px each) over an enlarged fourth one
    as the scene, like a camera picture of several people rather than a face crop; `fmt`
    "JPEG" or "HEIF" (a phone's HEIC)."""
    n = len(images)
    scene = images[first % n].resize(size, Image.Resampling.BICUBIC)
    side = size[1] * 4 // 15
    for k in range(3):
        face = images[(first + 1 + k) % n].resize((side, side), Image.Resampling.BICUBIC)
        left = size[0] * (1 + 3 * k) // 10
        scene.paste(face, (left, size[1] // 3))
    out = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
        # x265's fastest preset: encoding speed does not change what decoding costs.
        scene.save(out, "HEIF", quality=JPEG_QUALITY, enc_params={"preset": "ultrafast"})
    else:
        scene.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def heic_photos(images: Sequence[Image.Image], count: int, size: tuple[int, int]) -> list[bytes]:
    """`count` HEIC group photos, encoded in a process of its own: x265 keeps 100-200 MB of
    buffers in the process that encodes, and every child this process starts counts the
    parent's resident memory at fork time in its own peak RSS."""
    n = len(images)
    jobs = [([images[(k + j) % n] for j in range(4)], 0, size, "HEIF") for k in range(count)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return list(pool.map(_photo_job, jobs))


def _photo_job(job: tuple[Sequence[Image.Image], int, tuple[int, int], str]) -> bytes:
    return photo_variant(*job)


def is_heif(data: bytes) -> bool:
    """True for an ISOBMFF (HEIC/HEIF/AVIF) file."""
    return data[4:8] == b"ftyp"


def unique_copy(data: bytes, text: str) -> bytes:
    """The same picture made a distinct file: a JPEG COM segment, or a HEIF `free` box at the
    end (ISOBMFF readers skip it)."""
    if is_heif(data):
        payload = text.encode("ascii")
        return data + (len(payload) + 8).to_bytes(4, "big") + b"free" + payload
    return with_comment(data, text)


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment carrying `text` (after SOI and the JFIF APP0)."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # keep APP0 right after SOI, as JFIF readers expect
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    payload = text.encode("ascii")
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:at] + segment + jpeg[at:]


def write_copies(
    variants: Sequence[bytes], dest: Path, count: int, prefix: str, *, backdate: bool = True
) -> list[Path]:
    """Write `count` unique files cycling through `variants`, backdated to count as complete."""
    dest.mkdir(parents=True, exist_ok=True)
    stamp = time.time() - BACKDATE_S
    paths = []
    for i in range(count):
        data = variants[i % len(variants)]
        path = dest / f"{prefix}{i:06d}.{'heic' if is_heif(data) else 'jpg'}"
        path.write_bytes(unique_copy(data, f"benchmark {prefix}{i}"))
        if backdate:
            os.utime(path, (stamp, stamp))
        paths.append(path)
    return paths
