"""Image quality per picture (size, sharpness, compression), and weights that take its class
signal away.

In our datasets quality goes with the class: most real sources are small, soft web photos and
upscaled video crops, most generated ones clean renders. A model rewarded on such data learns
"sharp = AI" (DETECTION.md). Two measures against it: the random degradation chains
(training.degrade) put both classes at every quality, and `balance_weights` reweights the
training rows so that both classes have the same distribution of quality. `class_signal`
says how much each quality measure still tells the class (ROC AUC, 0.5 = nothing).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import cv2
import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

# IJG's standard luminance quantisation table (quality 50); libjpeg scales it by quality.
_IJG_LUMA: Final[np.ndarray] = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
# Lossless formats count as the best quality.
LOSSLESS: Final[int] = 100
MEASURES: Final[tuple[str, ...]] = ("side", "sharpness", "jpeg_quality")
# Smallest balancing weight, relative to its class's mean: every row still counts a little.
WEIGHT_FLOOR: Final[float] = 0.05


@dataclass(frozen=True, slots=True)
class Quality:
    """How large, how sharp and how compressed one picture is."""

    side: int  # shorter side in pixels, as decoded
    sharpness: float  # mean |Laplacian| of the grey whole view (high-frequency energy)
    jpeg_quality: int  # estimated JPEG quality, LOSSLESS for PNG and the like


def measure(data: bytes, whole: np.ndarray, side: int) -> Quality:
    """The quality of a picture from its bytes, its whole view and its decoded shorter side."""
    return Quality(side=int(side), sharpness=sharpness(whole), jpeg_quality=jpeg_quality(data))


def sharpness(rgb: np.ndarray) -> float:
    """High-frequency energy: mean absolute Laplacian of the grey picture (grey levels)."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def jpeg_quality(data: bytes) -> int:
    """libjpeg quality whose luminance table is closest to the file's (LOSSLESS when not JPEG).

    Compared by the sum of the table, which does not depend on the order it is stored in.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None) or {}
    except Exception:  # not a picture Pillow opens: no compression to speak of
        return LOSSLESS
    if not tables:
        return LOSSLESS
    total = float(np.sum(next(iter(tables.values()))))
    return int(np.argmin([abs(_scaled_sum(q) - total) for q in range(1, 101)]) + 1)


def _scaled_sum(quality: int) -> float:
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return float(np.clip(np.floor((_IJG_LUMA * scale + 50.0) / 100.0), 1, 255).sum())


def as_array(qualities: Sequence[Quality]) -> np.ndarray:
    """(N, 3) float64: log side, log sharpness, JPEG quality."""
    return np.array(
        [[np.log(max(q.side, 1)), np.log1p(q.sharpness), q.jpeg_quality] for q in qualities],
        dtype=np.float64,
    ).reshape(-1, 3)


def balance_weights(facts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, an overlap weight (Li, Morgan and Zaslavsky 2018): with p = P(ai | quality) from
    a logistic regression on the three measures (squares and products included), ai rows weigh
    1 - p and real rows p. Both classes then have the same quality distribution (that of the
    pictures whose quality does not give their class away), so quality predicts nothing.

    `facts`: (N, 3) from `as_array`. Each class's weights have mean 1 (class balance is the
    caller's); no row falls below WEIGHT_FLOOR of its class's mean.
    """
    y = (np.asarray(labels) >= 0.5).astype(int)
    weights = np.ones(len(y))
    if y.all() or not y.any():
        return weights
    propensity = make_pipeline(
        StandardScaler(), PolynomialFeatures(2), LogisticRegression(C=1.0, max_iter=1000)
    )
    p = propensity.fit(facts, y).predict_proba(facts)[:, 1]
    weights = np.where(y == 1, 1.0 - p, p)
    for c in (0, 1):
        rows = y == c
        weights[rows] /= weights[rows].mean()
        weights[rows] = np.maximum(weights[rows], WEIGHT_FLOOR)
        weights[rows] /= weights[rows].mean()
    return weights


def effective_share(weights: np.ndarray) -> float:
    """Kish's effective sample size of weighted rows, as a share of the rows (1 = unweighted)."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / max((w**2).sum(), 1e-12) / max(len(w), 1))


def class_signal(
    facts: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Per measure, how well it alone tells the class: max(AUC, 1 - AUC), 0.5 = not at all."""
    y = np.asarray(labels) >= 0.5
    if y.all() or not y.any():
        return {name: 0.5 for name in MEASURES}
    out = {}
    for k, name in enumerate(MEASURES):
        auc = float(roc_auc_score(y, facts[:, k], sample_weight=weights))
        out[name] = round(max(auc, 1.0 - auc), 4)
    return out


def per_source(facts: np.ndarray, sources: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per source: median shorter side, median sharpness and median JPEG quality."""
    src = np.asarray(sources, dtype=object)
    report: dict[str, dict[str, Any]] = {}
    for name in sorted(set(sources)):
        rows = facts[src == name]
        report[str(name)] = {
            "pictures": len(rows),
            "median_side": round(float(np.exp(np.median(rows[:, 0])))),
            "median_sharpness": round(float(np.expm1(np.median(rows[:, 1]))), 2),
            "median_jpeg_quality": int(np.median(rows[:, 2])),
        }
    return report
