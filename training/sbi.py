"""Self-blended images (Shiohara and Yamasaki, CVPR 2022): face swaps made from real faces.

A real picture's face is blended with a slightly altered copy of itself (colour, sharpness, a
small shift in scale and position), through a soft mask drawn around the face's landmarks with
a randomly shaped edge. The result shows nothing but the traces every swap tool leaves where it
pastes a face (a blending boundary, a mismatch of colour, sharpness or compression), so a model
trained on it looks for those, not for one swap tool's or one dataset's look. Self-blended
pictures are labelled manipulated and only ever made from real training pictures.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from PIL import Image

from detector.faces import FaceBox
from training.degrade import Colour

# Bumped whenever the same picture and seed would give another blend (feature caches use it).
SBI_VERSION: Final[int] = 2
# Blend strengths, as in the paper: mostly a full paste, sometimes a partial one.
BLEND_RATIOS: Final[tuple[float, ...]] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


@dataclass(frozen=True, slots=True)
class Blended:
    """A self-blended picture and the mask it was blended through (0..1, zero off the face)."""

    rgb: np.ndarray
    mask: np.ndarray


def self_blend(rgb: np.ndarray, face: FaceBox, seed: int) -> Blended:
    """The picture with its face blended from an altered copy of itself (from its own seed)."""
    rng = np.random.default_rng(seed)
    mask = blend_mask(rgb.shape[:2], face, rng)
    source = _altered(rgb, face, rng).astype(np.float32)
    m = mask[:, :, None]
    out = source * m + rgb.astype(np.float32) * (1.0 - m)
    return Blended(np.clip(np.rint(out), 0, 255).astype(np.uint8), mask)


def blend_mask(shape: tuple[int, int], face: FaceBox, rng: np.random.Generator) -> np.ndarray:
    """A soft mask over the face: the hull of points placed from the five landmarks, randomly
    scaled and jittered, eroded or dilated, blurred, kept inside the face box."""
    height, width = shape
    marks = np.array(face.landmarks, dtype=np.float64)
    eyes, mouth = marks[:2].mean(axis=0), marks[3:5].mean(axis=0)
    span = max(float(np.hypot(*(eyes - mouth))), 2.0)
    up = (eyes - mouth) / span
    side = np.array([-up[1], up[0]])  # from the left eye towards the right one
    points = np.array(
        [
            eyes + up * 0.8 * span,
            marks[0] + up * 0.5 * span - side * 0.35 * span,
            marks[1] + up * 0.5 * span + side * 0.35 * span,
            marks[3] - up * 0.4 * span - side * 0.3 * span,
            marks[4] - up * 0.4 * span + side * 0.3 * span,
            mouth - up * 0.9 * span,
        ]
    )
    centre = points.mean(axis=0)
    points = centre + (points - centre) * rng.uniform(0.75, 1.1)
    points += rng.normal(0.0, 0.06 * span, points.shape)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(points).astype(np.int32)), 255)
    mask = _reshaped_edge(mask, span, rng)
    sigma = rng.uniform(0.05, 0.2) * span
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma) * _inside_box(
        shape, face
    )
    peak = float(soft.max())
    scale = float(rng.choice(BLEND_RATIOS)) / peak if peak > 0 else 0.0
    return np.asarray(soft * scale, dtype=np.float32)


def _reshaped_edge(mask: np.ndarray, span: float, rng: np.random.Generator) -> np.ndarray:
    """Erode or dilate by a random amount: the edge runs at a random distance from the hull."""
    k = max(1, int(rng.uniform(0.02, 0.15) * span))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    return cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)


def _inside_box(shape: tuple[int, int], face: FaceBox) -> np.ndarray:
    inside = np.zeros(shape, np.float32)
    x0, y0 = max(0, int(np.floor(face.x))), max(0, int(np.floor(face.y)))
    x1, y1 = (
        min(shape[1], int(np.ceil(face.x + face.w))),
        min(shape[0], int(np.ceil(face.y + face.h))),
    )
    inside[y0:y1, x0:x1] = 1.0
    return inside


def _altered(rgb: np.ndarray, face: FaceBox, rng: np.random.Generator) -> np.ndarray:
    """The same picture slightly changed: colour, sharpness, compression, scale and position."""
    out = Colour(rng.uniform(-12, 12), rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15))(rgb)
    out = np.clip(out.astype(np.int16) + rng.integers(-8, 9, 3), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    else:
        amount = rng.uniform(0.3, 1.0)
        out = cv2.addWeighted(out, 1.0 + amount, cv2.GaussianBlur(out, (0, 0), 1.0), -amount, 0)
    if rng.random() < 0.5:
        encoded = io.BytesIO()
        Image.fromarray(out).save(encoded, "JPEG", quality=int(rng.integers(50, 96)))
        out = np.asarray(Image.open(encoded).convert("RGB"))
    centre = (face.x + face.w / 2.0, face.y + face.h / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, 0.0, rng.uniform(0.95, 1.05))
    matrix[:, 2] += rng.uniform(-0.02, 0.02, 2) * np.array([face.w, face.h])
    return cv2.warpAffine(out, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT)
