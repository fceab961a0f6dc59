"""Backbone features of every view of every training picture, pass by pass, cached on disk.

A pass renders each picture once and cuts its views with the serving code (`ViewSpec`):
- pass 0: the file as it is;
- passes 1..: the file after its own random processing chain (training.degrade);
- SELF_BLEND: real pictures with a face, self-blended (training.sbi), labelled manipulated.
Only the features are kept (a few KB per view instead of 150 KB of pixels), computed by the
frozen backbone through LiteRT (about 1.5x TensorFlow's speed on this CPU) while two threads
render the next pictures. Rows are cached per split and pass, keyed by the pictures, the view
settings, the chain settings, the seed and the backbone's weights.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
import PIL

from detector import imageio
from detector.atomic import write_atomic
from detector.errors import ImageRejected
from detector.faces import FACES_VERSION
from detector.views import FACE, PATCH, VIEWS_VERSION, WHOLE, Views, ViewSpec
from training import degrade, quality, sbi
from training.datasets import Sample, cache_key
from training.pretrained.network import BACKBONE_NAME, feature_model

logger = logging.getLogger(__name__)

KINDS: Final[tuple[str, ...]] = (WHOLE, PATCH, FACE)
PLAIN: Final[int] = 0
SELF_BLEND: Final[int] = 99
# Bumped whenever the same pictures, settings and backbone would give other rows.
FEATURES_VERSION: Final[int] = 3
_CHUNK: Final[int] = 32
_ARRAYS: Final[tuple[str, ...]] = ("feats", "kind", "index", "passes", "labels", "quality")


@dataclass(frozen=True, slots=True)
class Rows:
    """Feature rows: one per view of a rendered picture."""

    feats: np.ndarray  # (R, D) float32
    kind: np.ndarray  # (R,) int8, index into KINDS
    index: np.ndarray  # (R,) int32, the picture: position in its split's samples
    passes: np.ndarray  # (R,) int16: PLAIN, a degraded pass, or SELF_BLEND
    labels: np.ndarray  # (R,) float32 (1 for self-blended rows)
    quality: np.ndarray  # (R, 3) quality of the rendered picture (training.quality.as_array)

    def __len__(self) -> int:
        return len(self.kind)

    def take(self, keep: np.ndarray) -> Rows:
        """The rows where `keep` is True."""
        return Rows(*(getattr(self, name)[keep] for name in _ARRAYS))

    @staticmethod
    def concat(parts: Sequence[Rows]) -> Rows:
        """Rows of several parts, in order."""
        return Rows(*(np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAYS))


class LiteRTRunner:
    """A Keras model over uint8 views, run through its LiteRT export (two threads)."""

    def __init__(self, model: keras.Model, size: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from detector.bundle import export_tflite_bytes

        self._interpreter = Interpreter(
            model_content=export_tflite_bytes(model, size), num_threads=2
        )
        self._input = self._interpreter.get_input_details()[0]["index"]
        output = self._interpreter.get_output_details()[0]
        self._output = output["index"]
        self.shape = tuple(int(n) for n in output["shape"][1:])
        self._batch = -1

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(N, ...) float32 outputs of (N, S, S, 3) uint8 views."""
        if pixels.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input, list(pixels.shape), strict=False)
            self._interpreter.allocate_tensors()
            self._batch = pixels.shape[0]
        self._interpreter.set_tensor(self._input, pixels.astype(np.float32))
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output), dtype=np.float32)


class Extractor:
    """Pooled backbone features of uint8 views, through a LiteRT export of the feature part."""

    def __init__(self, model: keras.Model, size: int) -> None:
        self._run = LiteRTRunner(feature_model(model), size)
        self.width = self._run.shape[-1]
        self.identity = backbone_identity(model, size)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(N, D) float32 features of (N, S, S, 3) uint8 views."""
        return self._run(pixels)


def backbone_identity(model: keras.Model, size: int) -> str:
    """A short digest of the backbone's weights and the view size (part of cache keys)."""
    digest = hashlib.sha256(f"{size}".encode())
    for weight in model.get_layer(BACKBONE_NAME).get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Passes:
    """Which passes to render and how: degraded copies and self-blends (train split only)."""

    degraded: int = 0
    self_blend: bool = False
    chain: degrade.DegradeConfig = field(default_factory=degrade.DegradeConfig)
    seed: int = 0

    def numbers(self) -> list[int]:
        """Pass numbers in the order they are rendered."""
        return [PLAIN, *range(1, self.degraded + 1), *([SELF_BLEND] if self.self_blend else [])]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One picture of one pass: its views, its quality and the label its rows carry."""

    views: Views
    quality: quality.Quality
    label: float
    kinds: tuple[str, ...]


def render(sample: Sample, number: int, spec: ViewSpec, passes: Passes) -> Rendered | None:
    """The picture as pass `number` sees it (None: no face to blend)."""
    rendered = rendered_bytes(sample, number, spec, passes)
    if rendered is None:
        return None
    data = rendered
    views = spec.decode(data, imageio.LoadLimits())
    side = min(views.source_width, views.source_height)
    if number == SELF_BLEND:
        # The blend shows in the face and the patch around it, not in the whole view.
        return Rendered(views, quality.measure(data, views.whole, side), 1.0, (PATCH, FACE))
    return Rendered(views, quality.measure(data, views.whole, side), float(sample.label), KINDS)


def rendered_bytes(sample: Sample, number: int, spec: ViewSpec, passes: Passes) -> bytes | None:
    """The file pass `number` screens: the sample's own bytes, or them after the picture's
    processing chain (self-blended first for SELF_BLEND: None for a fake or no face)."""
    data = sample.path.read_bytes()
    if number == PLAIN:
        return data
    rgb = imageio.decode_picture(data, None, imageio.LoadLimits()).rgb
    seed = _seed(passes.seed, number, sample)
    if number == SELF_BLEND:
        found = spec.finder.find(rgb) if spec.finder is not None else []
        if sample.label != 0 or not found:
            return None
        rgb = sbi.self_blend(rgb, found[0], seed).rgb
    return degrade.sample_chain(passes.chain, seed).apply(rgb)


def _seed(seed: int, number: int, sample: Sample) -> int:
    key = f"{seed}/{number}/{sample.path.name}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")


def _view_rows(item: Rendered) -> list[tuple[int, np.ndarray]]:
    """(kind, pixels) of every view the rows of this picture come from."""
    out = []
    if WHOLE in item.kinds:
        out.append((KINDS.index(WHOLE), item.views.whole))
    if PATCH in item.kinds and item.views.patch is not None:
        out.append((KINDS.index(PATCH), item.views.patch))
    if FACE in item.kinds and item.views.faces:
        out.append((KINDS.index(FACE), item.views.faces[0].pixels))
    return out


def pass_rows(
    samples: Sequence[Sample],
    number: int,
    spec: ViewSpec,
    passes: Passes,
    extract: Extractor,
    cache_dir: Path | None,
) -> Rows:
    """Rows of one pass over `samples`, from the cache when the same work was done before."""
    path = cache_path(samples, number, spec, passes, extract, cache_dir)
    if path is not None and path.is_file():
        logger.info("using features cache %s", path)
        with np.load(path) as data:
            return Rows(*(data[name] for name in _ARRAYS))
    started = time.perf_counter()
    rows = _extract_pass(samples, number, spec, passes, extract)
    logger.info(
        "features: pass %d, %d pictures, %d views, %.0f views/s",
        number,
        len(samples),
        len(rows),
        len(rows) / max(time.perf_counter() - started, 1e-9),
    )
    if path is not None:
        save_cache(path, {name: getattr(rows, name) for name in _ARRAYS}, "features")
    return rows


def cache_path(
    samples: Sequence[Sample],
    number: int,
    spec: ViewSpec,
    passes: Passes,
    extract: Extractor,
    cache_dir: Path | None,
) -> Path | None:
    if cache_dir is None or not samples:
        return None
    finder = spec.finder.options.to_dict() if spec.finder is not None else None
    settings = {
        "version": [FEATURES_VERSION, VIEWS_VERSION, FACES_VERSION, imageio.DECODER_VERSION],
        "pillow": PIL.__version__,
        "pass": number,
        "spec": [spec.size, spec.patch, finder],
        "chain": passes.chain.to_dict() if number != PLAIN else None,
        "seed": passes.seed if number != PLAIN else None,
        "backbone": extract.identity,
    }
    if number == SELF_BLEND:
        settings["self_blend"] = sbi.SBI_VERSION
    identity = json.dumps(settings, sort_keys=True)
    key = cache_key(samples, spec.size, identity)
    return cache_dir / f"{key}-rows.npz"


def _extract_pass(
    samples: Sequence[Sample], number: int, spec: ViewSpec, passes: Passes, extract: Extractor
) -> Rows:
    feats: list[np.ndarray] = []
    meta: list[ViewMeta] = []
    for pixels, chunk_meta in view_batches(samples, number, spec, passes):
        feats.append(extract(pixels))
        meta.extend(chunk_meta)
    return Rows(
        feats=np.concatenate(feats) if feats else np.zeros((0, extract.width), np.float32),
        kind=np.array([m[0] for m in meta], np.int8),
        index=np.array([m[1] for m in meta], np.int32),
        passes=np.full(len(meta), number, np.int16),
        labels=np.array([m[2] for m in meta], np.float32),
        quality=np.array([m[3] for m in meta], np.float64).reshape(-1, 3),
    )


# Per view row: kind, picture index, label, quality facts.
ViewMeta = tuple[int, int, float, np.ndarray]


def view_batches(
    samples: Sequence[Sample], number: int, spec: ViewSpec, passes: Passes
) -> Iterator[tuple[np.ndarray, list[ViewMeta]]]:
    """The views of pass `number`, a chunk of pictures at a time, in row order (the order of
    `pass_rows`): stacked uint8 pixels and each row's facts. Pictures that fail are skipped."""

    def one(i: int) -> tuple[int, Rendered | None]:
        try:
            return i, render(samples[i], number, spec, passes)
        except (ImageRejected, OSError) as exc:
            logger.warning("skipping %s: %s", samples[i].path, exc)
            return i, None

    for chunk in _rendered_chunks(len(samples), one):
        views, chunk_meta = [], []
        for i, item in chunk:
            if item is None:
                continue
            facts = quality.as_array([item.quality])[0]
            for kind, pixels in _view_rows(item):
                views.append(pixels)
                chunk_meta.append((kind, i, item.label, facts))
        if views:
            yield np.stack(views), chunk_meta


def _rendered_chunks(
    n: int, one: Callable[[int], tuple[int, Rendered | None]]
) -> Iterator[list[tuple[int, Rendered | None]]]:
    """Rendered pictures in chunks, the next chunk rendering (two threads; decoders and OpenCV
    release the GIL) while the caller extracts features of this one. Bounded: at most two
    chunks of pictures are held at a time."""
    starts = list(range(0, n, _CHUNK))
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: collections.deque[list[Future[tuple[int, Rendered | None]]]] = collections.deque()
        for start in starts:
            pending.append([pool.submit(one, i) for i in range(start, min(n, start + _CHUNK))])
            if len(pending) > 1:
                yield [f.result() for f in pending.popleft()]
        while pending:
            yield [f.result() for f in pending.popleft()]


def save_cache(path: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """Write a cache of arrays as .npz atomically; a failure is logged, never fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
    except OSError as exc:  # a cache is an optimisation
        logger.warning("could not write %s cache %s: %s", what, path, exc)


def describe(passes: Passes) -> dict[str, Any]:
    """JSON-safe form for model.json."""
    return {
        "degraded_passes": passes.degraded,
        "self_blend": passes.self_blend,
        "chain": passes.chain.to_dict(),
    }
