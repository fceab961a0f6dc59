"""The views of every picture the model scores: the whole picture, a patch at the picture's own
resolution, and each face in it.

Generated pictures carry their evidence at two scales. The whole picture squeezed to the model's
input keeps the global traces (and the scene outside the face); resizing erases pixel-level
traces, which the native patch keeps: a 224 px window of untouched pixels, centred on the most
confident face (else on the picture). A face swap shows in the aligned face. Training and serving
both build views here, from a picture decoded by `detector.imageio`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from PIL import Image

from detector.faces import AlignedFace, FaceBox, FaceFinder, FaceOptions, align, similarity
from detector.imageio import RESAMPLE, LoadLimits, Picture, decode_picture, whole_view

# Pictures are decoded at no less than this (JPEG DCT reduction stops above it), so faces are
# cut from enough pixels whatever the model's input size.
WORK_SIZE: Final[int] = 512
# A picture is box-reduced for its whole view only while it keeps this many times the view's
# side: Pillow's own reducing_gap, at which the result is indistinguishable from resampling
# the whole picture.
REDUCING_GAP: Final[int] = 3
# The reductions a JPEG decoder applies in the DCT, in source pixels per decoded pixel.
_DCT_REDUCTIONS: Final[tuple[int, ...]] = (8, 4, 2, 1)
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
    """Whole view, the native patch (when asked), and every face the finder accepts.

    The face search and the whole view read a reduced copy of a large picture; each face and
    the patch read only their own region of the decoded pixels.
    """
    copy = reduced_copy(picture.image, size, finder.options.detect_size if finder else None)
    found: list[FaceBox] = []
    faces: tuple[AlignedFace, ...] = ()
    if finder is not None:
        found = [box.scaled(copy.factor) for box in finder.find(np.asarray(copy.image))]
        faces = tuple(
            _in_source(align(picture.image, b, size, finder.options), picture) for b in found
        )
    return Views(
        whole=whole_view(copy.image, size),
        faces=faces,
        source_width=picture.source_width,
        source_height=picture.source_height,
        format=picture.format,
        patch=native_patch(picture.image, size, found[0] if found else None) if patch else None,
    )


@dataclass(frozen=True, slots=True)
class ReducedCopy:
    """A picture box-reduced by a whole `factor` (1: the picture itself)."""

    image: Image.Image
    factor: int


def reduced_copy(image: Image.Image, size: int, detect_size: int | None) -> ReducedCopy:
    """The smallest whole-factor reduction that still gives the whole view REDUCING_GAP times
    its pixels and the face search (when there is one) its full detection size.

    Both resample the picture far down anyway; from a box-reduced copy they cost a few ms
    instead of 70 for a 12-megapixel photo. Pictures of up to 1,280 px (every training
    picture) are never reduced.
    """
    factor = min(image.size) // (REDUCING_GAP * size)
    if detect_size is not None:
        factor = min(factor, max(image.size) // detect_size)
    if factor < 2:
        return ReducedCopy(image, 1)
    return ReducedCopy(image.reduce(factor), factor)


def native_patch(image: Image.Image, size: int, face: FaceBox | None) -> np.ndarray:
    """A (size, size, 3) window of the picture's own pixels, centred on `face` (else on the
    picture) and kept inside it; a picture smaller than the window gives its centre square
    resized to the window (there are no finer pixels to keep)."""
    width, height = image.size
    if min(height, width) < size:
        side = min(height, width)
        left, top = (width - side) // 2, (height - side) // 2
        square = image.crop((left, top, left + side, top + side))
        return np.array(square.resize((size, size), RESAMPLE))
    cx, cy = (face.x + face.w / 2.0, face.y + face.h / 2.0) if face else (width / 2, height / 2)
    left = int(np.clip(round(cx - size / 2.0), 0, width - size))
    top = int(np.clip(round(cy - size / 2.0), 0, height - size))
    return np.array(image.crop((left, top, left + size, top + size)))


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
    pixels a reduced decode would resample. Without one, a large JPEG is decoded reduced in the
    DCT, and a face left with fewer pixels than its crop is cut again from a second decode
    reduced only as far as that face allows.
    """
    if patch:
        return make_views(decode_picture(data, None, limits), size, finder, patch=True)
    picture = decode_picture(data, max(size, WORK_SIZE), limits)
    views = make_views(picture, size, finder)
    if finder is None or not views.faces:
        return views
    reduction = _sharpest_reduction(views.faces, size, finder.options)
    if reduction >= round(picture.scale):
        return views
    side = min(picture.source_width, picture.source_height)
    finer = decode_picture(data, None if reduction == 1 else -(-side // reduction), limits)
    faces = tuple(
        replace(align(finer.image, f.box.scaled(1 / finer.scale), size, finder.options), box=f.box)
        for f in views.faces
    )
    return replace(views, faces=faces)


def _sharpest_reduction(faces: Sequence[AlignedFace], size: int, options: FaceOptions) -> int:
    """The largest DCT reduction (8, 4, 2 or 1) that leaves every face at least as many
    pixels as its crop has: the crop is then never upsampled."""
    reduction = _DCT_REDUCTIONS[0]
    for face in faces:
        marks = np.array(face.box.landmarks, dtype=np.float32)
        crop_per_source = float(np.hypot(*similarity(marks, size, options.face_scale)[0, :2]))
        reduction = min(
            reduction, next(r for r in _DCT_REDUCTIONS if r * crop_per_source <= 1.0 or r == 1)
        )
    return reduction


def _in_source(face: AlignedFace, picture: Picture) -> AlignedFace:
    """The face with its box in source pixels (the decoder may have reduced the picture)."""
    scale = picture.scale
    if abs(scale - 1.0) < 1e-9:
        return face
    box: FaceBox = face.box.scaled(scale)
    return AlignedFace(box=box, pixels=face.pixels, padded=face.padded, zoom=face.zoom)
