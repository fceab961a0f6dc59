"""Input pipeline: decode every image once through the detector's loader, then tf.data batches.

Decoding goes through `detector.imageio` (the one decode path serving uses), so the model trains
on exactly the pixels it will see in production. The decoded uint8 pixels are kept in a memory-
mapped cache file (under the system temp folder by default, never in the repository): later epochs
and later runs on the same files skip decoding entirely.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import tensorflow as tf

from detector import imageio
from detector.atomic import write_atomic
from detector.errors import ImageRejected
from training import augment as aug
from training.datasets import Sample, cache_key

logger = logging.getLogger(__name__)

CACHE_FOLDER = "deepfake-detector-cache"


@dataclass(frozen=True, slots=True)
class DecodedSet:
    """Decoded pixels of some samples (rejected files dropped) with their labels and sources."""

    pixels: np.ndarray  # (N, S, S, 3) uint8, possibly a read-only memmap
    labels: np.ndarray  # (N,) float32, 0 = real, 1 = ai
    sources: tuple[str, ...]
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)


def default_cache_dir() -> Path:
    """Where decoded-pixel caches live when the config names no folder."""
    return Path(tempfile.gettempdir()) / CACHE_FOLDER


def decode_samples(
    samples: Sequence[Sample],
    image_size: int,
    *,
    cache_dir: Path | None = None,
    workers: int = 2,
    limits: imageio.LoadLimits | None = None,
) -> DecodedSet:
    """Decode samples to (N, S, S, 3) uint8 with the serving decoder; cached on disk by key."""
    limits = limits or imageio.LoadLimits()
    decoder = f"detector.imageio/{imageio.RESAMPLE.name}/Pillow-{PIL.__version__}"
    key = cache_key(samples, image_size, decoder)
    folder = cache_dir or default_cache_dir()
    pixels_path = folder / f"{key}-pixels.npy"
    keep_path = folder / f"{key}-keep.npy"
    if pixels_path.is_file() and keep_path.is_file():
        logger.info("using decoded-pixel cache %s", pixels_path)
        pixels, keep = np.load(pixels_path, mmap_mode="r"), np.load(keep_path)
    else:
        pixels, keep = _decode_all(samples, image_size, limits, workers)
        _write_cache(folder, pixels_path, keep_path, pixels, keep)
    kept = tuple(s for s, k in zip(samples, keep, strict=True) if k)
    labels = np.array([s.label for s in kept], dtype=np.float32)
    if not keep.all():
        pixels = pixels[keep]  # copies only the kept rows
    return DecodedSet(pixels, labels, tuple(s.source for s in kept), kept)


def _decode_all(
    samples: Sequence[Sample], size: int, limits: imageio.LoadLimits, workers: int
) -> tuple[np.ndarray, np.ndarray]:
    started = time.perf_counter()
    pixels = np.zeros((len(samples), size, size, 3), dtype=np.uint8)
    keep = np.ones(len(samples), dtype=bool)

    def one(i: int) -> None:
        try:
            pixels[i] = imageio.load_image(samples[i].path, size, limits).pixels
        except ImageRejected as exc:
            # A bad file in a training set is skipped, not fatal: datasets scraped from the
            # web always hold a few.
            logger.warning("skipping %s: %s (%s)", samples[i].path, exc.reason, exc.code)
            keep[i] = False

    # Pillow releases the GIL while decoding, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(len(samples))))
    elapsed = time.perf_counter() - started
    logger.info(
        "decoded %d images at %d px in %.1f s (%.0f images/s), %d skipped",
        len(samples),
        size,
        elapsed,
        len(samples) / max(elapsed, 1e-9),
        int((~keep).sum()),
    )
    return pixels, keep


def _write_cache(
    folder: Path, pixels_path: Path, keep_path: Path, pixels: np.ndarray, keep: np.ndarray
) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(pixels_path, lambda fh: np.save(fh, pixels))
        write_atomic(keep_path, lambda fh: np.save(fh, keep))
    except OSError as exc:  # a cache is an optimisation; training goes on without it
        logger.warning("could not write decoded-pixel cache in %s: %s", folder, exc)


def _gather(
    data: DecodedSet, weights: np.ndarray
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    def fetch(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.sort(idx)  # sorted reads are kinder to a memory-mapped cache
        back = np.argsort(np.argsort(idx))
        return np.asarray(data.pixels[order])[back], data.labels[idx], weights[idx]

    return fetch


def _batches(data: DecodedSet, weights: np.ndarray, indices: tf.data.Dataset) -> tf.data.Dataset:
    """Index batches -> (uint8 pixels, labels, weights) through tf.numpy_function."""
    size = data.pixels.shape[1]
    fetch = _gather(data, weights)

    def load(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        x, y, w = tf.numpy_function(fetch, [idx], [tf.uint8, tf.float32, tf.float32])
        x.set_shape([None, size, size, 3])
        y.set_shape([None])
        w.set_shape([None])
        return x, y, w

    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def train_dataset(
    data: DecodedSet,
    weights: np.ndarray,
    batch_size: int,
    seed: int,
    augment: aug.AugmentConfig,
) -> tf.data.Dataset:
    """Endless shuffled, augmented, prefetched batches of (float32 pixels, labels, weights).

    Reshuffled every pass over the data; augmentation sees only pixels and a fresh per-batch
    seed (never repeating across epochs), never the labels: both classes are transformed alike.
    """
    n = len(data)
    indices = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    batched = indices.batch(batch_size, drop_remainder=n >= batch_size).repeat()
    batches = _batches(data, weights, batched)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)  # endless (2,) seeds

    def apply(batch: tuple[tf.Tensor, ...], s: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x, y, w = batch
        return aug.augment_batch(x, s, augment), y, w

    ds = tf.data.Dataset.zip((batches, seeds)).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(data: DecodedSet, batch_size: int) -> tf.data.Dataset:
    """Ordered, unaugmented batches of (float32 pixels, labels, weights) for prediction."""
    ones = np.ones(len(data), dtype=np.float32)
    indices = tf.data.Dataset.range(len(data)).batch(batch_size)
    ds = _batches(data, ones, indices).map(lambda x, y, w: (tf.cast(x, tf.float32), y, w))
    return ds.prefetch(tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights (mean 1) when the classes are imbalanced, else 1.0 each."""
    counts = np.bincount(labels.astype(np.int64), minlength=2).astype(np.float64)
    if counts.min() == 0 or counts[0] == counts[1]:
        return {0: 1.0, 1: 1.0}
    total = counts.sum()
    return {c: float(total / (2.0 * counts[c])) for c in (0, 1)}


def sample_weights(labels: np.ndarray, weights: dict[int, float]) -> np.ndarray:
    """Per-sample weight array from class weights."""
    return np.where(labels >= 0.5, weights[1], weights[0]).astype(np.float32)
