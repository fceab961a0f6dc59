"""Image quality per picture, and the weights that take its class signal away."""

from __future__ import annotations

import numpy as np

from training import quality
from training.degrade import Blur


def test_sharpness_falls_with_blur() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert quality.sharpness(Blur(1.5)(rgb)) < 0.5 * quality.sharpness(rgb)


def test_balancing_weights_remove_what_quality_says_about_the_class() -> None:
    # Real pictures mostly small and soft, generated ones mostly large and sharp: quality alone
    # tells the class (AUC well above 0.5) until the rows are weighted.
    rng = np.random.default_rng(1)
    n = 4000
    labels = (rng.random(n) < 0.5).astype(np.float32)
    side = np.where(labels > 0, rng.normal(5.8, 0.4, n), rng.normal(5.4, 0.4, n))
    sharp = np.where(labels > 0, rng.normal(2.3, 0.3, n), rng.normal(2.0, 0.3, n))
    jpeg = np.where(
        labels > 0,
        rng.choice([80, 90, 95], n, p=[0.1, 0.2, 0.7]),
        rng.choice([70, 80, 90, 95], n, p=[0.3, 0.3, 0.3, 0.1]),
    ).astype(float)
    facts = np.stack([side, sharp, jpeg], axis=1)
    before = quality.class_signal(facts, labels)
    weights = quality.balance_weights(facts, labels)
    after = quality.class_signal(facts, labels, weights)
    assert min(before.values()) > 0.75
    assert max(after.values()) < 0.56
    # Each class keeps its total weight, and every row still counts a little.
    for c in (0, 1):
        mine = weights[labels == c]
        assert np.isclose(mine.mean(), 1.0) and mine.min() >= 0.5 * quality.WEIGHT_FLOOR
    assert 0.1 < quality.effective_share(weights) < 1.0 == quality.effective_share(np.ones(9))


def test_per_source_report() -> None:
    facts = quality.as_array(
        [quality.Quality(256, 3.0, 90), quality.Quality(512, 1.0, 100), quality.Quality(300, 2, 75)]
    )
    report = quality.per_source(facts, ["a", "b", "a"])
    assert report["b"] == {
        "pictures": 1,
        "median_side": 512,
        "median_sharpness": 1.0,
        "median_jpeg_quality": 100,
    }
    assert report["a"]["pictures"] == 2
