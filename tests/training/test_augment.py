"""Batch augmentation: shape/dtype/range, determinism, and the same treatment for both classes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from training import augment as aug
from training import pipeline
from training.datasets import Sample

SEED = tf.constant([3, 4], dtype=tf.int64)


def textured_batch(n: int = 8, size: int = 48, seed: int = 0) -> np.ndarray:
    """Sharp random textures: every transform visibly changes them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def high_freq_energy(x: np.ndarray) -> np.ndarray:
    """Mean absolute horizontal pixel difference per image."""
    return np.abs(np.diff(x.astype(np.float64), axis=2)).mean(axis=(1, 2, 3))


def test_keeps_shape_dtype_and_range() -> None:
    x = textured_batch()
    out = aug.augment_batch(tf.constant(x), SEED, aug.AugmentConfig()).numpy()
    assert out.shape == x.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, x)


def test_same_seed_same_result_other_seed_other_result() -> None:
    x = tf.constant(textured_batch())
    cfg = aug.AugmentConfig()
    a = aug.augment_batch(x, SEED, cfg).numpy()
    assert np.array_equal(a, aug.augment_batch(x, SEED, cfg).numpy())
    assert not np.array_equal(a, aug.augment_batch(x, SEED + 1, cfg).numpy())


def test_no_augment_is_identity() -> None:
    x = textured_batch()
    out = aug.augment_batch(tf.constant(x), SEED, aug.NO_AUGMENT).numpy()
    np.testing.assert_array_equal(out, x.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("blur", dataclasses.replace(aug.NO_AUGMENT, blur_prob=1.0)),
        ("resample", dataclasses.replace(aug.NO_AUGMENT, resample_prob=1.0)),
        ("jpeg", dataclasses.replace(aug.NO_AUGMENT, jpeg_prob=1.0, jpeg_max_quality=60)),
    ],
)
def test_degradations_remove_high_frequencies(name: str, cfg: aug.AugmentConfig) -> None:
    x = textured_batch()
    out = aug.augment_batch(tf.constant(x), SEED, cfg).numpy()
    assert np.all(high_freq_energy(out) < high_freq_energy(x)), name


def test_crop_and_flip_move_pixels_without_changing_values_much() -> None:
    x = textured_batch()
    flip = dataclasses.replace(aug.NO_AUGMENT, flip=True)
    out = aug.augment_batch(tf.constant(x), SEED, flip).numpy()
    for original, flipped in zip(x, out, strict=True):
        assert np.array_equal(flipped, original) or np.array_equal(flipped, original[:, ::-1])
    crop = dataclasses.replace(aug.NO_AUGMENT, crop_prob=1.0, crop_min_area=0.3)
    cropped = aug.augment_batch(tf.constant(x), SEED, crop).numpy()
    assert cropped.shape == x.shape
    assert not np.allclose(cropped, x)


def test_blur_per_image_with_zero_sigma_is_identity() -> None:
    x = tf.constant(textured_batch(n=3), tf.float32)
    out = aug.blur_per_image(x, tf.constant([0.0, 1.0, 0.0]), radius=3).numpy()
    np.testing.assert_allclose(out[0], x.numpy()[0], atol=1e-3)
    np.testing.assert_allclose(out[2], x.numpy()[2], atol=1e-3)
    assert high_freq_energy(out[1:2])[0] < high_freq_energy(x.numpy()[1:2])[0]


def test_training_pipeline_treats_both_classes_alike() -> None:
    # The same images, once labelled real and once ai: the augmented batches the model sees
    # must be statistically indistinguishable between the classes.
    images = textured_batch(n=32, size=32, seed=5)
    pixels = np.concatenate([images, images])
    labels = np.array([0.0] * 32 + [1.0] * 32, dtype=np.float32)
    samples = tuple(Sample(Path(f"/x/{i}.jpg"), int(labels[i]), "train", "s") for i in range(64))
    data = pipeline.DecodedSet(pixels, labels, tuple("s" for _ in samples), samples)
    ds = pipeline.train_dataset(data, np.ones(64, np.float32), 16, 7, aug.AugmentConfig())
    energy: dict[int, list[float]] = {0: [], 1: []}
    brightness: dict[int, list[float]] = {0: [], 1: []}
    for x, y, _w in ds.take(24):  # the dataset is endless: 6 epochs of 4 batches
        for image, label in zip(x.numpy(), y.numpy(), strict=True):
            energy[int(label)].append(float(high_freq_energy(image[None])[0]))
            brightness[int(label)].append(float(image.mean()))
    for stats in (energy, brightness):
        real, ai = np.array(stats[0]), np.array(stats[1])
        assert len(real) == len(ai) == 192
        # Identical inputs, identical augmentation distribution: means within 3 std errors.
        stderr = np.sqrt(real.var() / len(real) + ai.var() / len(ai))
        assert abs(real.mean() - ai.mean()) < 3 * stderr + 1e-6
    # And the augmentation really ran (it is not trivially "alike" by doing nothing).
    assert np.std(energy[0]) > 1.0
