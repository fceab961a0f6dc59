"""The two views of every picture the model scores: the whole picture and each face in it.

The whole view carries global traces of generation (a generated scene shows outside the face);
the face views carry what a face swap changes. Training and serving both build views here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from detector.faces import AlignedFace, FaceBox, FaceFinder, align
from detector.imageio import LoadLimits, Picture, decode_picture, whole_view

# Pictures are decoded at no less than this (JPEG DCT reduction stops above it), so faces are
# cut from enough pixels whatever the model's input size.
WORK_SIZE: Final[int] = 512


@dataclass(frozen=True, slots=True)
class Views:
    """The whole view and the aligned faces of one picture, at the model's input size."""

    whole: np.ndarray  # (S, S, 3) uint8
    faces: tuple[AlignedFace, ...]  # boxes in source-picture pixels
    source_width: int
    source_height: int
    format: str

    def stack(self) -> np.ndarray:
        """(1 + F, S, S, 3): the whole view first, then each face."""
        return np.stack([self.whole, *(f.pixels for f in self.faces)])


def make_views(picture: Picture, size: int, finder: FaceFinder | None) -> Views:
    """Whole view plus every face the finder accepts (none when finder is None)."""
    faces: tuple[AlignedFace, ...] = ()
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
    )


def decode_views(data: bytes, size: int, limits: LoadLimits, finder: FaceFinder | None) -> Views:
    """Decode untrusted bytes and build both views; raises ImageRejected for bad input."""
    return make_views(decode_picture(data, max(size, WORK_SIZE), limits), size, finder)


def _in_source(face: AlignedFace, picture: Picture) -> AlignedFace:
    """The face with its box in source pixels (the decoder may have reduced the picture)."""
    scale = picture.scale
    if abs(scale - 1.0) < 1e-9:
        return face
    box: FaceBox = face.box.scaled(scale)
    return AlignedFace(box=box, pixels=face.pixels, padded=face.padded, zoom=face.zoom)
