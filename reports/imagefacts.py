"""Facts about image files for the EDA report: header data, hashes, thumbnails and pixel features.

Pixels come from `detector.imageio.decode`, the same decode path training and serving use, so the
statistics describe what the model actually sees. Every file is untrusted: a file that fails to
decode is counted with its reason instead of stopping the report.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import cv2
import numpy as np
from PIL import Image
from scipy.fft import dctn

from detector.errors import ImageRejected
from detector.imageio import LoadLimits, decode, read_file, sha256_bytes

logger = logging.getLogger(__name__)

# Side of the square the pixel features are measured on (the dataset's own size).
FEATURE_SIZE: Final[int] = 256
THUMB_SIZE: Final[int] = 112
_LIMITS: Final = LoadLimits()
# IJG standard luminance quantisation table (quality 50), natural order as Pillow returns it.
_STD_LUMA: Final = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=float,
)  # fmt: skip

# Pixel features compared between classes, with what each one is meant to catch.
FEATURES: Final[dict[str, str]] = {
    "hf_energy_ratio": "share of spectral power above half the Nyquist frequency (FFT)",
    "noise_residual_std": "std of the image minus its 3x3 median blur (sensor noise)",
    "laplacian_var": "variance of the Laplacian (sharpness)",
    "saturation_mean": "mean HSV saturation (0..1)",
    "mean_r": "mean red channel (0..1)",
    "mean_g": "mean green channel (0..1)",
    "mean_b": "mean blue channel (0..1)",
    "jpeg_quality": "JPEG quality estimated from the luminance quantisation table",
}


class LabelledImage(Protocol):
    """A labelled file of a dataset (training.datasets.Sample satisfies this)."""

    @property
    def path(self) -> Path: ...
    @property
    def label(self) -> int: ...
    @property
    def split(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the header and bytes of one file say, without decoding pixels fully."""

    path: Path
    label: int
    split: str
    source: str
    size_bytes: int
    width: int
    height: int
    format: str
    sha256: str
    phash: int  # 64-bit DCT perceptual hash
    grey: np.ndarray | None  # 32x32 float32 grey thumbnail, to confirm near-duplicates
    error: str = ""


def file_facts(sample: LabelledImage) -> FileFacts:
    """Header, SHA-256 and difference hash of one file; `error` set when it cannot be read."""
    base = (sample.path, sample.label, sample.split, sample.source)
    try:
        data = read_file(sample.path, _LIMITS)
        with Image.open(io.BytesIO(data)) as im:
            width, height, fmt = im.width, im.height, im.format or "?"
            im.draft("L", (64, 64))  # JPEG: decode at 1/2..1/8 scale, much faster
            small = im.convert("L").resize((32, 32), Image.Resampling.BILINEAR)
        grey = np.asarray(small, dtype=np.float32)
        digest = sha256_bytes(data)
        return FileFacts(*base, len(data), width, height, fmt, digest, phash(grey), grey)
    except (ImageRejected, OSError, ValueError, Image.DecompressionBombError) as exc:
        return FileFacts(*base, 0, 0, 0, "", "", 0, None, error=str(exc) or type(exc).__name__)


def phash(grey: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies against their median."""
    coeffs = dctn(grey.astype(np.float64), norm="ortho")[:8, :8].flatten()
    bits = coeffs > np.median(coeffs[1:])
    bits[0] = False  # the DC term is overall brightness, not structure
    return int(np.packbits(bits).view(">u8")[0])


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Pixel check of a hash match: aligned face crops share low frequencies without being
    the same photo, so also demand near-equal 32x32 greys (correlation and mean difference)."""
    da, db = a - a.mean(), b - b.mean()
    denom = float(np.linalg.norm(da) * np.linalg.norm(db))
    corr = float((da * db).sum()) / denom if denom > 0 else 1.0
    return corr >= 0.97 and float(np.abs(a - b).mean()) <= 10.0


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """Index pairs (i < j) whose 64-bit hashes differ in at most `max_distance` bits."""
    pairs: list[tuple[int, int, int]] = []
    h = hashes.astype(np.uint64)
    for start in range(0, len(h), 512):  # chunks keep memory at 512 x N
        block = h[start : start + 512]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        rows, cols = np.nonzero(dist <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c > i:
                pairs.append((i, c, int(dist[r, c])))
    return pairs


def thumbnail_uri(path: Path, size: int = THUMB_SIZE) -> str:
    """A small JPEG thumbnail of the file as a data: URI ("" when it cannot be decoded)."""
    try:
        img = decode(read_file(path, _LIMITS), size, _LIMITS)
    except ImageRejected as exc:
        logger.warning("no thumbnail for %s: %s", path, exc)
        return ""
    return pixels_uri(img.pixels)


def pixels_uri(pixels: np.ndarray) -> str:
    """An RGB uint8 array as a JPEG data: URI."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pixel_features(path: Path) -> dict[str, float]:
    """The FEATURES of one image, measured on its FEATURE_SIZE decode (raises ImageRejected)."""
    data = read_file(path, _LIMITS)
    rgb = decode(data, FEATURE_SIZE, _LIMITS).pixels
    grey8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    grey = grey8.astype(np.float64)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    means = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    return {
        "hf_energy_ratio": high_frequency_ratio(grey),
        "noise_residual_std": float((grey - cv2.medianBlur(grey8, 3)).std()),
        "laplacian_var": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        "saturation_mean": float(hsv[..., 1].mean() / 255.0),
        "mean_r": float(means[0]),
        "mean_g": float(means[1]),
        "mean_b": float(means[2]),
        "jpeg_quality": jpeg_quality(data),
    }


def high_frequency_ratio(grey: np.ndarray) -> float:
    """Share of (non-DC) spectral power at radii above half the Nyquist frequency."""
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy = np.fft.fftfreq(grey.shape[0])[:, None]
    fx = np.fft.fftfreq(grey.shape[1])[None, :]
    radius = np.sqrt(fx**2 + fy**2) / 0.5  # 1.0 = Nyquist along an axis
    total = power[radius > 0].sum()
    return float(power[radius > 0.5].sum() / total) if total > 0 else 0.0


def jpeg_quality(data: bytes) -> float:
    """IJG-scale quality (1..100) from the luminance quantisation table; NaN if not a JPEG."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None)
            if im.format != "JPEG" or not tables or 0 not in tables:
                return float("nan")
            luma = np.asarray(tables[0], dtype=float)
    except (OSError, ValueError):
        return float("nan")
    if luma.size != 64:
        return float("nan")
    # Inverse of libjpeg's scaling: table = std * S / 100, S = 5000/q (q < 50) or 200 - 2q.
    scale = float(np.mean(luma * 100.0 / _STD_LUMA))
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(np.clip(round(quality), 1, 100))


def small_vector(path: Path, side: int = 32) -> np.ndarray:
    """The image as a flat float vector of a side x side RGB decode (for PCA)."""
    rgb = decode(read_file(path, _LIMITS), side, _LIMITS).pixels
    return rgb.astype(np.float32).reshape(-1) / 255.0
