"""Calibration on the validation split: temperature scaling, decision threshold, ECE.

A network trained with early stopping on a small dataset is usually overconfident; dividing its
logits by one fitted temperature fixes most of that without changing the ranking (ROC AUC).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import optimize

logger = logging.getLogger(__name__)

# Temperatures outside this range mean something is broken rather than miscalibrated.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function as float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def logit(probs: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Inverse of `sigmoid` (probabilities clipped away from 0 and 1) as float64."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def nll_from_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(logits / temperature) (stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    # log(1 + exp(-|z|)) + max(z, 0) - y*z  ==  BCE with logits, without overflow.
    return float(np.mean(np.logaddexp(0.0, -np.abs(z)) + np.maximum(z, 0.0) - y * z))


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped so one confident error stays finite)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the NLL of sigmoid(logits / T) (1.0 when there is no data)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.size == 0 or len(np.unique(y)) < 2:
        logger.warning("temperature scaling needs both classes; keeping T = 1")
        return 1.0
    # Optimise log T: the problem is smooth and unimodal in log space.
    result = optimize.minimize_scalar(
        lambda log_t: nll_from_logits(z, y, math.exp(log_t)),
        bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
        method="bounded",
    )
    temperature = float(math.exp(result.x))
    logger.info(
        "temperature %.3f: NLL %.4f -> %.4f",
        temperature,
        nll_from_logits(z, y),
        nll_from_logits(z, y, temperature),
    )
    return temperature


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of P(ai): weighted gap between mean confidence and accuracy in equal-width bins."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        return 0.0
    # Confidence of the predicted class, as in Guo et al. 2017 (binary case).
    predicted = p >= 0.5
    confidence = np.where(predicted, p, 1.0 - p)
    correct = (predicted == (y >= 0.5)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(ece)


def rates_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, TPR (fakes caught), TNR, precision and balanced accuracy at one threshold."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels) >= 0.5
    pred = p >= threshold
    tp = float(np.sum(pred & y))
    tn = float(np.sum(~pred & ~y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    tpr = tp / (tp + fn) if tp + fn else 0.0
    tnr = tn / (tn + fp) if tn + fp else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(1.0, tp + tn + fp + fn),
        "tpr": tpr,
        "tnr": tnr,
        "fpr": 1.0 - tnr if tn + fp else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "balanced_accuracy": 0.5 * (tpr + tnr),
    }


def threshold_sweep(
    probs: np.ndarray, labels: np.ndarray, steps: int = 19
) -> list[dict[str, float]]:
    """Rates at evenly spaced thresholds 0.05 .. 0.95 (for reports and operators)."""
    return [rates_at(probs, labels, float(t)) for t in np.linspace(0.05, 0.95, steps)]


def choose_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising balanced accuracy; among ties, the one closest to 0.5.

    Preferring 0.5 among equally good thresholds keeps a calibrated model's neutral point unless
    the validation data gives a reason to move it.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0 or len(np.unique(np.asarray(labels) >= 0.5)) < 2:
        return 0.5
    y = np.asarray(labels) >= 0.5
    values = np.unique(np.concatenate([p, [0.0, 1.0]]))
    # Candidates halfway between consecutive scores, plus 0.5 itself.
    candidates = np.unique(np.concatenate([(values[:-1] + values[1:]) / 2.0, [0.5]]))
    # Sorted per-class scores give every candidate's rates at once (O(N log N)).
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    tpr = 1.0 - np.searchsorted(pos, candidates, side="left") / len(pos)
    tnr = np.searchsorted(neg, candidates, side="left") / len(neg)
    scores = 0.5 * (tpr + tnr)
    best = candidates[scores >= scores.max() - 1e-12]
    return float(best[np.argmin(np.abs(best - 0.5))])


def calibration_summary(
    logits: np.ndarray, labels: np.ndarray, temperature: float
) -> dict[str, Any]:
    """NLL and ECE before and after temperature scaling (stored in model.json)."""
    return {
        "temperature": temperature,
        "nll_before": nll_from_logits(logits, labels),
        "nll_after": nll_from_logits(logits, labels, temperature),
        "ece_before": expected_calibration_error(sigmoid(logits), labels),
        "ece_after": expected_calibration_error(sigmoid(np.asarray(logits) / temperature), labels),
    }


# Precision each confident label ("real" below the band, "ai" above it) must reach on the
# validation split; scores between the two limits get the label "uncertain".
UNCERTAIN_PRECISION = 0.97
# Largest share of validation pictures the band may hold: a band that holds a fifth of the
# pictures helps no one (DETECTION.md). Where the precision needs more, the band stops here and
# the confident labels are less precise than asked (model.json records what they reach).
UNCERTAIN_MAX_SHARE = 0.05


def uncertain_band(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    threshold: float,
    precision: float = UNCERTAIN_PRECISION,
    max_share: float = 1.0,
) -> tuple[float, float]:
    """The narrowest band [lo, hi) around `threshold` outside which both labels reach `precision`,
    holding at most `max_share` of the scores (at most half of that on each side).

    `hi` is the lowest cut >= threshold at which the scores >= hi are ai with at least
    `precision`; `lo` the highest cut <= threshold at which the scores < lo are real with at
    least `precision`. Cuts lie halfway between neighbouring validation scores. A side that never
    reaches the precision extends to 0 or 1; a model already that precise gets lo == hi (empty).
    """
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"precision must be in (0, 1], got {precision!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    p = np.asarray(val_scores, dtype=np.float64).reshape(-1)
    y = np.asarray(val_labels).reshape(-1) >= 0.5
    if p.shape != y.shape:
        raise ValueError(f"{p.size} scores but {y.size} labels")
    values = np.unique(np.concatenate([p, [0.0, 1.0]]))
    cuts = np.unique(np.concatenate([(values[:-1] + values[1:]) / 2.0, [threshold, 0.0, 1.0]]))
    ordered, ai, real = np.sort(p), np.sort(p[y]), np.sort(p[~y])
    # Scores >= cut: how many, how many of them ai; scores < cut: how many, how many real.
    below = np.searchsorted(ordered, cuts, side="left")
    above = p.size - below
    ai_above = ai.size - np.searchsorted(ai, cuts, side="left")
    real_below = np.searchsorted(real, cuts, side="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        ai_ok = (above > 0) & (ai_above >= precision * above - 1e-9)
        real_ok = (below > 0) & (real_below >= precision * below - 1e-9)
    his = cuts[(cuts >= threshold) & ai_ok]
    los = cuts[(cuts <= threshold) & real_ok]
    hi = float(his.min()) if his.size else 1.0
    lo = float(los.max()) if los.size else 0.0
    lo, hi = _capped(ordered, threshold, lo, hi, max_share)
    logger.info("uncertain band [%.4f, %.4f) for precision %.3f", lo, hi, precision)
    return lo, hi


def _capped(
    ordered: np.ndarray, threshold: float, lo: float, hi: float, max_share: float
) -> tuple[float, float]:
    """The band narrowed so that each side holds at most max_share / 2 of the scores."""
    if max_share >= 1.0 or ordered.size == 0:
        return lo, hi
    k = int(np.floor(max_share / 2.0 * ordered.size))
    below = ordered[ordered < threshold]
    above = ordered[ordered >= threshold]
    if below.size > k:  # the k highest scores under the threshold may be uncertain, no more
        lo = max(lo, float((below[-k - 1] + below[-k]) / 2.0) if k else threshold)
    if above.size > k:
        hi = min(hi, float((above[k - 1] + above[k]) / 2.0) if k else threshold)
    return lo, hi


def band_report(
    scores: np.ndarray, labels: np.ndarray, band: tuple[float, float], threshold: float
) -> dict[str, float]:
    """Share of pictures in the band, and the precision of each confident label outside it."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) >= 0.5
    inside = (p >= band[0]) & (p < band[1])
    ai = ~inside & (p >= threshold)
    real = ~inside & (p < threshold)
    return {
        "uncertain_share": float(inside.mean()) if p.size else 0.0,
        "ai_precision": float(y[ai].mean()) if ai.any() else 1.0,
        "real_precision": float((~y[real]).mean()) if real.any() else 1.0,
    }
