"""Finding and aligning faces: YuNet on a downscaled copy, one similarity transform per face.

Training and serving both call `FaceFinder.find` and `align`, so a face crop the model was
trained on has exactly the pixels of the crop it screens.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

YUNET_FILE: Final[Path] = Path(__file__).with_name("yunet") / "face_detection_yunet.onnx"
# Bumped whenever find/align would give other pixels for the same picture (cache keys use it).
FACES_VERSION: Final[int] = 1
# ArcFace's five-point template (eye centres, nose tip, mouth corners) in a 112 px crop, as
# fractions of the crop side: one canonical pose for every source.
TEMPLATE: Final[np.ndarray] = (
    np.array(
        [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ],
        dtype=np.float32,
    )
    / 112.0
)
# Grey for pixels outside the face oval (and outside the picture): every crop carries the same
# fill in the same place, so padding cannot tell one source (or class) from another.
FILL: Final[int] = 127
_NMS: Final[float] = 0.3
_TOP_K: Final[int] = 500
# Least side of the detection copy worth running YuNet on (no face fits in fewer pixels).
_MIN_DETECT_SIDE: Final[int] = 8


@dataclass(frozen=True, slots=True)
class FaceOptions:
    """Which faces count and how they are cut out."""

    # Long side of the copy the detector sees: a 6000 px photo costs what a 640 px one does.
    detect_size: int = 640
    # Detector confidence below which a candidate is not a face.
    min_score: float = 0.7
    # Shorter side of a face box, in pixels of the original picture.
    min_size: int = 24
    # Faces kept per picture (the most confident ones).
    max_faces: int = 8
    # Template scale: 1.0 is ArcFace-tight; less leaves more margin around the face.
    face_scale: float = 0.9
    # Share of the crop's half-width and half-height kept by the oval mask.
    oval: tuple[float, float] = (0.98, 1.0)

    def __post_init__(self) -> None:
        if self.detect_size < 32:
            raise ValueError(f"detect_size must be at least 32, got {self.detect_size}")
        if not 0.0 < self.min_score <= 1.0:
            raise ValueError(f"min_score must be in (0, 1], got {self.min_score}")
        if self.max_faces < 0:
            raise ValueError(f"max_faces must be >= 0, got {self.max_faces}")
        if not 0.3 <= self.face_scale <= 2.0:
            raise ValueError(f"face_scale must be between 0.3 and 2, got {self.face_scale}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in model.json: training and serving must agree)."""
        return {
            "detect_size": self.detect_size,
            "min_score": self.min_score,
            "min_size": self.min_size,
            "max_faces": self.max_faces,
            "face_scale": self.face_scale,
            "oval": list(self.oval),
            "version": FACES_VERSION,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceOptions:
        """Inverse of to_dict (unknown keys ignored)."""
        kwargs: dict[str, Any] = {
            k: data[k] for k in ("detect_size", "min_score", "min_size", "max_faces") if k in data
        }
        if "face_scale" in data:
            kwargs["face_scale"] = float(data["face_scale"])
        if "oval" in data:
            kwargs["oval"] = tuple(float(v) for v in data["oval"])
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """One detected face in the coordinates of the picture it was found in."""

    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: tuple[tuple[float, float], ...] = field(default=())

    def rounded(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) as whole pixels, for storage and drawing."""
        return (round(self.x), round(self.y), round(self.w), round(self.h))

    def scaled(self, factor: float) -> FaceBox:
        """The same face in a picture `factor` times as large."""
        return FaceBox(
            self.x * factor,
            self.y * factor,
            self.w * factor,
            self.h * factor,
            self.score,
            tuple((px * factor, py * factor) for px, py in self.landmarks),
        )


@dataclass(frozen=True, slots=True)
class AlignedFace:
    """A face cut out in the canonical pose at the model's input size."""

    box: FaceBox
    pixels: np.ndarray  # (S, S, 3) uint8 RGB
    # Share of the crop's oval that lay outside the picture (filled with FILL).
    padded: float
    # Magnification fit_inside applied to keep the crop inside the picture (1.0 = none).
    zoom: float = 1.0


class FaceFinder:
    """YuNet face detection; one OpenCV detector per thread (they are not thread-safe)."""

    def __init__(self, options: FaceOptions | None = None, model: Path = YUNET_FILE) -> None:
        self.options = options or FaceOptions()
        self._model = Path(model)
        if not self._model.is_file():
            raise FileNotFoundError(f"face detector model not found: {self._model}")
        self._local = threading.local()

    def _detector(self, width: int, height: int) -> Any:
        det = getattr(self._local, "detector", None)
        if det is None:
            det = cv2.FaceDetectorYN.create(
                str(self._model), "", (width, height), self.options.min_score, _NMS, _TOP_K
            )
            self._local.detector = det
        det.setInputSize((width, height))
        return det

    def find(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an (H, W, 3) uint8 RGB picture, most confident first, filtered by options."""
        opts = self.options
        if opts.max_faces == 0 or rgb.ndim != 3 or min(rgb.shape[:2]) < 8:
            return []
        height, width = rgb.shape[:2]
        scale = min(1.0, opts.detect_size / max(height, width))
        small = rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < _MIN_DETECT_SIDE:
            # A strip too thin to hold a face at this scale (a 96 x 47,456 picture is 1 px high
            # here): YuNet then answers with whatever its buffers held from the last picture.
            return []
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        _, rows = self._detector(bgr.shape[1], bgr.shape[0]).detect(bgr)
        if rows is None:
            return []
        factor = 1.0 / scale if scale < 1.0 else 1.0
        faces = [_row_to_box(row).scaled(factor) for row in rows]
        kept = [f for f in faces if f.score >= opts.min_score and min(f.w, f.h) >= opts.min_size]
        kept.sort(key=lambda f: -f.score)
        return kept[: opts.max_faces]


def _row_to_box(row: np.ndarray) -> FaceBox:
    marks = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
    return FaceBox(
        float(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[14]), marks
    )


def similarity(landmarks: np.ndarray, size: int, face_scale: float) -> np.ndarray:
    """2x3 similarity transform taking the five landmarks onto the scaled template."""
    dst = (0.5 + (TEMPLATE - 0.5) * face_scale) * size
    matrix, _ = cv2.estimateAffinePartial2D(
        landmarks.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS
    )
    if matrix is None:  # degenerate landmarks (all on one point): fall back to the box centre
        raise ValueError("face landmarks do not define a transform")
    return matrix


def oval_mask(size: int, oval: tuple[float, float]) -> np.ndarray:
    """(S, S) bool: the face oval every crop keeps; the rest is FILL."""
    centre = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    rx, ry = oval[0] * size / 2.0, oval[1] * size / 2.0
    return ((xs - centre) / rx) ** 2 + ((ys - centre) / ry) ** 2 <= 1.0


_MASKS: dict[tuple[int, float, float], np.ndarray] = {}
_MASKS_LOCK = threading.Lock()


def _mask(size: int, oval: tuple[float, float]) -> np.ndarray:
    key = (size, float(oval[0]), float(oval[1]))
    with _MASKS_LOCK:
        if key not in _MASKS:
            _MASKS[key] = oval_mask(size, oval)
        return _MASKS[key]


def align(picture: Image.Image, box: FaceBox, size: int, options: FaceOptions) -> AlignedFace:
    """Warp one face into the canonical pose at `size` px, oval-masked, from an RGB picture
    (only the face's region of it is read)."""
    width, height = picture.size
    aligned = similarity(np.array(box.landmarks, dtype=np.float32), size, options.face_scale)
    matrix = fit_inside(aligned, width, height, size)
    zoom = float(np.hypot(*matrix[0, :2]) / np.hypot(*aligned[0, :2]))
    source = _warp_source(picture, matrix, size)
    crop = cv2.warpAffine(
        source.pixels,
        source.matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(FILL, FILL, FILL),
    )
    mask = _mask(size, options.oval)
    crop[~mask] = FILL
    padded = float(np.count_nonzero(mask & ~source.inside)) / float(np.count_nonzero(mask))
    return AlignedFace(box=box, pixels=crop, padded=padded, zoom=zoom)


def fit_inside(matrix: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """The transform moved (and, if need be, zoomed in) so the crop reads only picture pixels.

    Several sources (web_photos, utkface, DFDC) are cut so tight that any aligned crop with a
    margin reaches past the picture; padding there, mirrored or grey, marks those (mostly real)
    sources for the model to learn. Shifting the window inside the picture costs a little
    alignment on those pictures instead, and padding then says nothing about the class.
    """
    lo, hi = _source_bounds(matrix, size)
    extent = hi - lo
    zoom = max(extent[0] / width, extent[1] / height, 1.0)
    if zoom > 1.0:  # the window is larger than the picture: magnify about the crop centre
        centre = np.array([size / 2.0, size / 2.0])
        linear = matrix[:, :2] * zoom
        matrix = np.hstack([linear, (centre - zoom * (centre - matrix[:, 2]))[:, None]])
        lo, hi = _source_bounds(matrix, size)
    shift = np.maximum(0.0, -lo) - np.maximum(0.0, hi - np.array([width, height]))
    # crop(p) = A p + t reads source point p; reading p - shift instead moves the window.
    moved = matrix.copy()
    moved[:, 2] = matrix[:, 2] - matrix[:, :2] @ shift
    return moved


def _source_bounds(matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds, in source pixels, of what an (S, S) crop reads."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    points = corners @ inverse.T
    return points.min(axis=0), points.max(axis=0)


@dataclass(frozen=True, slots=True)
class _WarpSource:
    """What one crop is warped from: the picture's pixels around the face, the transform
    taking them to the crop, and (S, S) which crop pixels lie inside the picture."""

    pixels: np.ndarray
    matrix: np.ndarray
    inside: np.ndarray


def _warp_source(picture: Image.Image, matrix: np.ndarray, size: int) -> _WarpSource:
    """Only the region the crop reads is taken from the picture (a 12-megapixel photo is never
    turned into one array for a face); when the face is much larger than the crop, that region
    is area-downscaled first: bilinear warping alone would alias (a 600 px face into 128 px)."""
    width, height = picture.size
    lo, hi = _source_bounds(matrix, size)
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    if scale >= 0.5:
        # Bilinear reads the 2 x 2 pixels around each point: the bounds, and a pixel to spare.
        box = _clipped(np.floor(lo) - 1, np.ceil(hi) + 2, width, height)
        local = matrix.copy()
        local[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array(box[:2], np.float64)
        inside = _inside_picture(matrix, width, height, size)
        return _WarpSource(np.asarray(picture.crop(box)), local, inside)
    x0, y0, x1, y1 = box = _clipped(np.floor(lo), np.ceil(hi) + 1, width, height)
    factor = 2.0 * scale
    out = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
    # A region over twice the size it is reduced to is box-reduced by a whole step while it is
    # read (Pillow's reduce): never for a picture of up to 896 px, so never in training.
    step = max(1, int(1.0 / factor))
    region = np.asarray(picture.reduce(step, box) if step > 1 else picture.crop(box))
    reduced = cv2.resize(region, out, interpolation=cv2.INTER_AREA)
    fx, fy = out[0] / region.shape[1], out[1] / region.shape[0]
    # Crop coordinates from reduced ones: undo the resize, then the offset, then the warp.
    to_source = np.array([[step / fx, 0, x0], [0, step / fy, y0], [0, 0, 1]], np.float64)
    local = (np.vstack([matrix, [0, 0, 1]]) @ to_source)[:2]
    inside = _inside_picture(local, reduced.shape[1], reduced.shape[0], size)
    return _WarpSource(reduced, local, inside)


def _clipped(lo: np.ndarray, hi: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inside the picture and at least one pixel large."""
    x0 = int(np.clip(lo[0], 0, width - 1))
    y0 = int(np.clip(lo[1], 0, height - 1))
    x1 = int(np.clip(hi[0], x0 + 1, width))
    y1 = int(np.clip(hi[1], y0 + 1, height))
    return x0, y0, x1, y1


def _inside_picture(matrix: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """(S, S) bool: crop pixels whose source point lies inside the picture."""
    inverse = cv2.invertAffineTransform(matrix)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return (sx >= -0.5) & (sx <= width - 0.5) & (sy >= -0.5) & (sy <= height - 0.5)
