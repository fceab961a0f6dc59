"""Both views of every training picture, decoded once through the serving code and cached.

`detector.views.decode_views` is what serving calls, so training sees identical pixels: the
whole picture, and the most confident aligned face (most dataset pictures hold one face).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL

from detector import faces as face_mod
from detector import imageio
from detector.atomic import write_atomic
from detector.errors import ImageRejected
from detector.faces import FaceFinder, FaceOptions
from detector.views import decode_views
from training.datasets import Sample, cache_key
from training.pipeline import default_cache_dir

logger = logging.getLogger(__name__)

_ARRAYS = ("whole", "face", "has_face", "n_faces", "padded", "zoom", "keep")


@dataclass(frozen=True, slots=True)
class ViewSet:
    """Decoded views of some samples (rejected files dropped)."""

    whole: np.ndarray  # (N, S, S, 3) uint8
    face: np.ndarray  # (N, S, S, 3) uint8, zeros where has_face is False
    has_face: np.ndarray  # (N,) bool
    n_faces: np.ndarray  # (N,) int: faces the finder accepted
    padded: np.ndarray  # (N,) share of the face oval outside the picture
    zoom: np.ndarray  # (N,) magnification applied to keep the face crop inside the picture
    labels: np.ndarray  # (N,) float32
    sources: tuple[str, ...]
    samples: tuple[Sample, ...]
    # Identity of the decoded content (cache key), for caches of what is computed from it.
    key: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, keep: np.ndarray) -> ViewSet:
        """The pictures where `keep` is True."""
        picked = np.flatnonzero(keep)
        return ViewSet(
            whole=self.whole[picked],
            face=self.face[picked],
            has_face=self.has_face[picked],
            n_faces=self.n_faces[picked],
            padded=self.padded[picked],
            zoom=self.zoom[picked],
            labels=self.labels[picked],
            sources=tuple(self.sources[i] for i in picked),
            samples=tuple(self.samples[i] for i in picked),
            key=f"{self.key}/subset-{hash_mask(keep)}",
        )


def hash_mask(keep: np.ndarray) -> str:
    """Short stable identity of a boolean row mask."""
    return hashlib.sha256(np.packbits(keep.astype(bool)).tobytes()).hexdigest()[:12]


def decode_viewsets(
    samples: Sequence[Sample],
    size: int,
    options: FaceOptions,
    *,
    cache_dir: Path | None = None,
    workers: int = 2,
) -> ViewSet:
    """Views of every sample at `size` px, from the on-disk cache when it is there."""
    decoder = (
        f"views/{imageio.DECODER_VERSION}/{face_mod.FACES_VERSION}/{options.to_dict()}"
        f"/Pillow-{PIL.__version__}"
    )
    key = cache_key(samples, size, decoder)
    path = (cache_dir or default_cache_dir()) / f"{key}-views.npz"
    if path.is_file():
        logger.info("using decoded-views cache %s", path)
        with np.load(path) as data:
            arrays = {name: data[name] for name in _ARRAYS}
    else:
        arrays = _decode_all(samples, size, options, workers)
        save_cache(path, arrays, "decoded-views")
    keep = arrays["keep"]
    kept = tuple(s for s, k in zip(samples, keep, strict=True) if k)
    return ViewSet(
        **{name: arrays[name][keep] for name in _ARRAYS if name != "keep"},
        labels=np.array([s.label for s in kept], dtype=np.float32),
        sources=tuple(s.source for s in kept),
        samples=kept,
        key=key,
    )


def _decode_all(
    samples: Sequence[Sample], size: int, options: FaceOptions, workers: int
) -> dict[str, np.ndarray]:
    started = time.perf_counter()
    n = len(samples)
    out = {
        "whole": np.zeros((n, size, size, 3), np.uint8),
        "face": np.zeros((n, size, size, 3), np.uint8),
        "has_face": np.zeros(n, bool),
        "n_faces": np.zeros(n, np.int32),
        "padded": np.zeros(n, np.float32),
        "zoom": np.ones(n, np.float32),
        "keep": np.ones(n, bool),
    }
    finder = FaceFinder(options)
    limits = imageio.LoadLimits()

    def one(i: int) -> None:
        try:
            views = decode_views(samples[i].path.read_bytes(), size, limits, finder)
        except (ImageRejected, OSError) as exc:
            logger.warning("skipping %s: %s", samples[i].path, exc)
            out["keep"][i] = False
            return
        out["whole"][i] = views.whole
        out["n_faces"][i] = len(views.faces)
        if views.faces:
            top = views.faces[0]
            out["face"][i], out["has_face"][i] = top.pixels, True
            out["padded"][i], out["zoom"][i] = top.padded, top.zoom

    # Decoders and OpenCV release the GIL, so threads overlap.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(n)))
    logger.info(
        "decoded views of %d images at %d px in %.1f s, %d without a face, %d skipped",
        n,
        size,
        time.perf_counter() - started,
        int((~out["has_face"] & out["keep"]).sum()),
        int((~out["keep"]).sum()),
    )
    return out


def save_cache(path: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """Write a cache of arrays as .npz atomically; a failure is logged, never fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
    except OSError as exc:  # a cache is an optimisation
        logger.warning("could not write %s cache %s: %s", what, path, exc)


def padding_report(views: ViewSet) -> dict[str, dict[str, float]]:
    """Per source: share of pictures with a face, of face crops padded, and of crops zoomed."""
    report: dict[str, dict[str, float]] = {}
    sources = np.array(views.sources)
    for source in sorted(set(views.sources)):
        sel = sources == source
        has = views.has_face[sel]
        report[source] = {
            "pictures": int(sel.sum()),
            "with_face": float(has.mean()) if has.size else 0.0,
            "padded_crops": float((views.padded[sel][has] > 0.01).mean()) if has.any() else 0.0,
            "zoomed_crops": float((views.zoom[sel][has] > 1.01).mean()) if has.any() else 0.0,
        }
    return report
