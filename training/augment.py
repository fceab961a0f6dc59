"""Batch augmentation as TensorFlow ops, applied to real and AI images alike.

Every transform here imitates what happens to a photo on its way to an inbox (cropping, blur,
rescaling, re-compression, exposure changes). They are drawn per image, independently of the label:
augmenting only one class would teach the model "blurry means real", which is exactly the shortcut
the dataset README warns about (upscaled real sources are blurrier than the fakes).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """Probabilities and strengths of each transform (0 probability disables it)."""

    flip: bool = True
    # Brightness shift up to +-brightness*255 and contrast factor in [1-contrast, 1+contrast].
    brightness: float = 0.1
    contrast: float = 0.2
    # Random resized crop: area fraction in [crop_min_area, 1], aspect ratio in [3/4, 4/3].
    crop_prob: float = 0.5
    crop_min_area: float = 0.7
    # Gaussian blur with sigma in [0.2, blur_max_sigma].
    blur_prob: float = 0.15
    blur_max_sigma: float = 1.5
    # Downscale to a factor in [resample_min_scale, 1) and back up.
    resample_prob: float = 0.15
    resample_min_scale: float = 0.5
    # JPEG re-compression at a quality in [jpeg_min_quality, jpeg_max_quality].
    jpeg_prob: float = 0.25
    jpeg_min_quality: int = 60
    jpeg_max_quality: int = 95

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored with the model's training config."""
        return asdict(self)


NO_AUGMENT = AugmentConfig(
    flip=False,
    brightness=0.0,
    contrast=0.0,
    crop_prob=0.0,
    blur_prob=0.0,
    resample_prob=0.0,
    jpeg_prob=0.0,
)


class Draws:
    """Independent stateless random draws from one seed: the same seed gives the same batch.

    Stateless ops (instead of a tf.random.Generator) keep augmentation reproducible inside a
    parallel tf.data map and identical under any distribution strategy.
    """

    CAPACITY = 32

    def __init__(self, seed: tf.Tensor) -> None:
        self._seeds = tf.random.experimental.stateless_split(seed, num=self.CAPACITY)
        self._used = 0

    def _next(self) -> tf.Tensor:
        if self._used >= self.CAPACITY:
            raise RuntimeError("augmentation drew more random tensors than Draws.CAPACITY")
        self._used += 1
        return self._seeds[self._used - 1]

    def uniform(
        self, shape: Any, low: float = 0.0, high: float = 1.0, dtype: tf.DType = tf.float32
    ) -> tf.Tensor:
        """Uniform values in [low, high) (ints: high excluded)."""
        return tf.random.stateless_uniform(shape, self._next(), low, high, dtype=dtype)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Augment a batch (N, H, W, 3) of 0..255 pixels -> float32, same shape and range.

    `seed` is a shape-(2,) int tensor; the labels are deliberately not an argument.
    """
    gen = Draws(seed)
    x = tf.cast(images, tf.float32)
    if cfg.crop_prob > 0:
        x = random_resized_crop(x, gen, cfg.crop_prob, cfg.crop_min_area)
    if cfg.flip:
        x = random_flip(x, gen)
    if cfg.blur_prob > 0:
        x = random_blur(x, gen, cfg.blur_prob, cfg.blur_max_sigma)
    if cfg.resample_prob > 0:
        x = random_resample(x, gen, cfg.resample_prob, cfg.resample_min_scale)
    if cfg.brightness > 0 or cfg.contrast > 0:
        x = random_color(x, gen, cfg.brightness, cfg.contrast)
    x = tf.clip_by_value(x, 0.0, 255.0)
    if cfg.jpeg_prob > 0:
        x = random_jpeg(x, gen, cfg.jpeg_prob, cfg.jpeg_min_quality, cfg.jpeg_max_quality)
    return x


def _chosen(gen: Draws, n: tf.Tensor, prob: float) -> tf.Tensor:
    """Boolean (N,) mask: which images get a transform."""
    return gen.uniform([n]) < prob


def _mix(mask: tf.Tensor, changed: tf.Tensor, original: tf.Tensor) -> tf.Tensor:
    return tf.where(mask[:, None, None, None], changed, original)


def random_flip(x: tf.Tensor, gen: Draws) -> tf.Tensor:
    """Mirror half of the images left-right."""
    return _mix(_chosen(gen, tf.shape(x)[0], 0.5), tf.reverse(x, axis=[2]), x)


def random_resized_crop(x: tf.Tensor, gen: Draws, prob: float, min_area: float) -> tf.Tensor:
    """Crop a random box (area and aspect jittered) and resize it back to the input size."""
    shape = tf.shape(x)
    n = shape[0]
    area = gen.uniform([n], min_area, 1.0)
    log_ratio = gen.uniform([n], math.log(3 / 4), math.log(4 / 3))
    ratio = tf.exp(log_ratio)
    h = tf.minimum(tf.sqrt(area / ratio), 1.0)
    w = tf.minimum(tf.sqrt(area * ratio), 1.0)
    top = gen.uniform([n]) * (1.0 - h)
    left = gen.uniform([n]) * (1.0 - w)
    boxes = tf.stack([top, left, top + h, left + w], axis=1)
    full = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    boxes = tf.where(_chosen(gen, n, prob)[:, None], boxes, full)
    # A full box with crop size == input size samples exactly the input pixels (identity).
    return tf.image.crop_and_resize(x, boxes, tf.range(n), shape[1:3])


def gaussian_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Normalised 1-D Gaussian kernels (N, 2*radius+1); sigma ~0 gives a delta (no blur)."""
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    s = tf.maximum(sigma, 1e-3)[:, None]
    k = tf.exp(-0.5 * tf.square(t[None, :] / s))
    return k / tf.reduce_sum(k, axis=1, keepdims=True)


def blur_per_image(x: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur with one sigma per image, as a single depthwise convolution."""
    shape = tf.shape(x)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    # Put the batch into the channel axis so that one depthwise conv applies a different
    # kernel to every image: (N, H, W, C) -> (1, H, W, N*C).
    planes = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c])
    k = tf.repeat(gaussian_kernels(sigma, radius), c, axis=0)  # (N*C, K)
    k = tf.transpose(k)  # (K, N*C)
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    planes = tf.pad(planes, pad, mode="REFLECT")  # zero padding would darken the borders
    planes = tf.nn.depthwise_conv2d(planes, k[:, None, :, None], [1, 1, 1, 1], "VALID")
    planes = tf.nn.depthwise_conv2d(planes, k[None, :, :, None], [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(planes, [h, w, n, c]), [2, 0, 1, 3])


def random_blur(x: tf.Tensor, gen: Draws, prob: float, max_sigma: float) -> tf.Tensor:
    """Gaussian-blur a random subset of the images, each with its own sigma."""
    n = tf.shape(x)[0]
    sigma = gen.uniform([n], 0.2, max_sigma)
    sigma = tf.where(_chosen(gen, n, prob), sigma, tf.zeros_like(sigma))
    return blur_per_image(x, sigma, radius=max(1, math.ceil(3 * max_sigma)))


def random_resample(x: tf.Tensor, gen: Draws, prob: float, min_scale: float) -> tf.Tensor:
    """Downscale a random subset (one factor per batch) and upscale it back: lost detail."""
    shape = tf.shape(x)
    size = shape[1:3]
    scale = gen.uniform([], min_scale, 1.0)
    small = tf.maximum(tf.cast(tf.cast(size, tf.float32) * scale, tf.int32), 8)
    # Two common downscalers, chosen per batch: box averaging and antialiased bilinear.
    down = tf.cond(
        gen.uniform([]) < 0.5,
        lambda: tf.image.resize(x, small, method="area"),
        lambda: tf.image.resize(x, small, method="bilinear", antialias=True),
    )
    up = tf.image.resize(down, size, method="bilinear")
    return _mix(_chosen(gen, shape[0], prob), up, x)


def random_color(x: tf.Tensor, gen: Draws, brightness: float, contrast: float) -> tf.Tensor:
    """Per-image contrast (around the image mean) and brightness jitter."""
    n = tf.shape(x)[0]
    factor = gen.uniform([n, 1, 1, 1], 1.0 - contrast, 1.0 + contrast)
    delta = gen.uniform([n, 1, 1, 1], -brightness, brightness) * 255.0
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * factor + mean + delta


def random_jpeg(x: tf.Tensor, gen: Draws, prob: float, min_q: int, max_q: int) -> tf.Tensor:
    """Re-encode a random subset as JPEG at a random quality (what sharing sites do)."""
    n = tf.shape(x)[0]
    quality = gen.uniform([n], min_q, max_q + 1, dtype=tf.int32)
    chosen = _chosen(gen, n, prob)
    pixels = tf.cast(tf.round(x), tf.uint8)

    def one(args: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tf.Tensor:
        image, q, apply = args
        return tf.cond(apply, lambda: tf.image.adjust_jpeg_quality(image, q), lambda: image)

    out = tf.map_fn(one, (pixels, quality, chosen), fn_output_signature=tf.uint8)
    # Images not re-encoded keep their unrounded float values.
    return _mix(chosen, tf.cast(out, tf.float32), x)
