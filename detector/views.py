"""The views of every picture the model scores: the whole picture, a patch at the picture's own
resolution, and each face in it.

Generated pictures carry their evidence at two scales. The whole picture squeezed to the model's
input keeps the global traces (and the scene outside the face); resizing erases pixel-level
traces, which the native patch keeps: a 224 px window of untouched pixels, centred on the most
confident face (else on the picture). A face swap shows in the aligned face. Training and serving
both build views here, from a picture decoded by `detector.imageio`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

from detector.faces import AlignedFace, FaceBox, FaceFinder, align
from detector.imageio import RESAMPLE, LoadLimits, Picture, decode_picture, whole_view

# Pictures are decoded at no less than this (JPEG DCT reduction stops above it), so faces are
# cut from enough pixels whatever the model's input size.
WORK_SIZE: Final[int] = 512
WHOLE: Final[str] = "whole"
PATCH: Final[str] = "patch"
FACE: Final[str] = "face"
# Bumped whenever the same picture would give other view pixels (training caches use it).
VIEWS_VERSION: Final[int] = 2


@dataclass(frozen=True, slots=True)
class Views:
    """The views of one picture at the model's input size, in the order the model scores them."""

    whole: np.ndarray  # (S, S, 3) uint8
    faces: tuple[AlignedFace, ...]  # boxes in source-picture pixels
    source_width: int
    source_height: int
    format: str
    # Native-resolution patch (None for a model without a patch view).
    patch: np.ndarray | None = None

    def stack(self) -> np.ndarray:
        """(1 + P + F, S, S, 3): the whole view, the patch when there is one, then each face."""
        patch = () if self.patch is None else (self.patch,)
        return np.stack([self.whole, *patch, *(f.pixels for f in self.faces)])


@dataclass(frozen=True, slots=True, eq=False)
class ViewSpec:
    """Which views a model scores and how they are cut: all that decoding needs to know."""

    size: int
    finder: FaceFinder | None = None
    patch: bool = False

    @property
    def key(self) -> tuple[int, bool, bool]:
        """Equal for specs that give the same views of the same bytes."""
        return (self.size, self.finder is not None, self.patch)

    def decode(self, data: bytes, limits: LoadLimits) -> Views:
        """Decode untrusted bytes into this spec's views; raises ImageRejected for bad input."""
        return decode_views(data, self.size, limits, self.finder, patch=self.patch)

    def of(self, picture: Picture) -> Views:
        """This spec's views of an already decoded picture."""
        return make_views(picture, self.size, self.finder, patch=self.patch)


def make_views(
    picture: Picture, size: int, finder: FaceFinder | None, *, patch: bool = False
) -> Views:
    """Whole view, the native patch (when asked), and every face the finder accepts."""
    faces: tuple[AlignedFace, ...] = ()
    found: list[FaceBox] = []
    if finder is not None:
        found = finder.find(picture.rgb)
        faces = tuple(
            _in_source(align(picture.rgb, b, size, finder.options), picture) for b in found
        )
    return Views(
        whole=whole_view(picture, size),
        faces=faces,
        source_width=picture.source_width,
        source_height=picture.source_height,
        format=picture.format,
        patch=native_patch(picture.rgb, size, found[0] if found else None) if patch else None,
    )


def native_patch(rgb: np.ndarray, size: int, face: FaceBox | None) -> np.ndarray:
    """A (size, size, 3) window of the picture's own pixels, centred on `face` (else on the
    picture) and kept inside it; a picture smaller than the window gives its centre square
    resized to the window (there are no finer pixels to keep)."""
    height, width = rgb.shape[:2]
    if min(height, width) < size:
        side = min(height, width)
        left, top = (width - side) // 2, (height - side) // 2
        square = Image.fromarray(rgb[top : top + side, left : left + side])
        return np.array(square.resize((size, size), RESAMPLE))
    cx, cy = (face.x + face.w / 2.0, face.y + face.h / 2.0) if face else (width / 2, height / 2)
    left = int(np.clip(round(cx - size / 2.0), 0, width - size))
    top = int(np.clip(round(cy - size / 2.0), 0, height - size))
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def decode_views(
    data: bytes,
    size: int,
    limits: LoadLimits,
    finder: FaceFinder | None,
    *,
    patch: bool = False,
) -> Views:
    """Decode untrusted bytes and build the views; raises ImageRejected for bad input.

    With a patch view the picture is decoded at full resolution: the patch exists to keep the
    pixels a reduced decode would resample.
    """
    work = None if patch else max(size, WORK_SIZE)
    return make_views(decode_picture(data, work, limits), size, finder, patch=patch)


def _in_source(face: AlignedFace, picture: Picture) -> AlignedFace:
    """The face with its box in source pixels (the decoder may have reduced the picture)."""
    scale = picture.scale
    if abs(scale - 1.0) < 1e-9:
        return face
    box: FaceBox = face.box.scaled(scale)
    return AlignedFace(box=box, pixels=face.pixels, padded=face.padded, zoom=face.zoom)
