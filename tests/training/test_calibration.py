"""Temperature scaling, ECE and threshold selection on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest

from training import calibration as cal


def overconfident(n: int = 4000, scale: float = 4.0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Logits of a calibrated model multiplied by `scale`: right ranking, far too sure."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 2.0, n)
    labels = (rng.uniform(size=n) < cal.sigmoid(true_logits)).astype(np.float64)
    return true_logits * scale, labels


def test_temperature_undoes_overconfidence_and_lowers_nll_and_ece() -> None:
    logits, labels = overconfident(scale=4.0)
    t = cal.fit_temperature(logits, labels)
    assert t == pytest.approx(4.0, rel=0.15)
    assert cal.nll_from_logits(logits, labels, t) < cal.nll_from_logits(logits, labels) - 0.1
    before = cal.expected_calibration_error(cal.sigmoid(logits), labels)
    after = cal.expected_calibration_error(cal.sigmoid(logits / t), labels)
    assert after < before / 2
    summary = cal.calibration_summary(logits, labels, t)
    assert summary["ece_after"] == pytest.approx(after)


def test_temperature_of_a_calibrated_model_is_about_one() -> None:
    logits, labels = overconfident(scale=1.0, seed=1)
    assert cal.fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.12)


def test_temperature_needs_both_classes() -> None:
    assert cal.fit_temperature(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 1.0
    assert cal.fit_temperature(np.array([]), np.array([])) == 1.0


def test_nll_is_stable_for_huge_logits() -> None:
    logits = np.array([1e4, -1e4])
    assert cal.nll_from_logits(logits, np.array([1.0, 0.0])) == pytest.approx(0.0)
    assert np.isfinite(cal.nll_from_logits(logits, np.array([0.0, 1.0])))


def test_ece_is_zero_for_perfect_confident_predictions_and_large_when_wrong() -> None:
    labels = np.array([0, 0, 1, 1])
    assert cal.expected_calibration_error(np.array([0.0, 0.0, 1.0, 1.0]), labels) == 0.0
    assert cal.expected_calibration_error(np.array([1.0, 1.0, 0.0, 0.0]), labels) == 1.0


def test_threshold_maximises_balanced_accuracy() -> None:
    # Real images score up to 0.7, fakes from 0.8: any cut in (0.7, 0.8) is perfect.
    probs = np.array([0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    t = cal.choose_threshold(probs, labels)
    assert 0.7 < t <= 0.8
    assert cal.rates_at(probs, labels, t)["balanced_accuracy"] == 1.0


def test_threshold_prefers_one_half_among_ties_and_handles_one_class() -> None:
    probs = np.array([0.05, 0.1, 0.9, 0.95])
    labels = np.array([0, 0, 1, 1])
    assert cal.choose_threshold(probs, labels) == 0.5
    assert cal.choose_threshold(probs, np.ones(4)) == 0.5


def test_threshold_balances_imbalanced_classes() -> None:
    rng = np.random.default_rng(3)
    real = rng.normal(0.35, 0.1, 900)
    fake = rng.normal(0.55, 0.1, 100)
    probs = np.clip(np.concatenate([real, fake]), 0, 1)
    labels = np.array([0] * 900 + [1] * 100)
    t = cal.choose_threshold(probs, labels)
    # Balanced accuracy puts the cut near the midpoint of the class means (0.45), where plain
    # accuracy on 9:1 data would push it up to call almost everything real.
    assert 0.40 < t < 0.50


def test_threshold_sweep_rows() -> None:
    probs = np.array([0.2, 0.4, 0.6, 0.8])
    labels = np.array([0, 0, 1, 1])
    rows = cal.threshold_sweep(probs, labels)
    assert len(rows) == 19
    middle = next(r for r in rows if abs(r["threshold"] - 0.5) < 1e-9)
    assert middle["accuracy"] == 1.0 and middle["tpr"] == 1.0 and middle["fpr"] == 0.0
    assert rows[0]["tpr"] == 1.0 and rows[0]["fpr"] == 1.0


def _overlapping(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.float64)
    scores = cal.sigmoid(rng.normal(np.where(labels == 1, 1.5, -1.5), 1.3))
    return scores, labels


@pytest.mark.parametrize("precision", [0.9, 0.95, 0.99])
def test_uncertain_band_gives_both_confident_labels_the_precision(precision: float) -> None:
    scores, labels = _overlapping()
    lo, hi = cal.uncertain_band(scores, labels, 0.5, precision=precision)
    assert lo <= 0.5 <= hi
    ai, real = scores >= hi, scores < lo
    assert labels[ai].mean() >= precision
    assert (1 - labels[real]).mean() >= precision
    # Narrowest: a cut one score further in on either side misses the precision.
    inner_hi = scores[(scores < hi) & (scores >= 0.5)]
    if inner_hi.size:
        assert labels[scores >= inner_hi.max()].mean() < precision


def test_uncertain_band_grows_with_the_precision_asked_for() -> None:
    scores, labels = _overlapping()
    widths = [np.subtract(*cal.uncertain_band(scores, labels, 0.5, p)[::-1]) for p in (0.9, 0.99)]
    assert widths[0] < widths[1]


def test_uncertain_band_holds_most_mistakes_on_fresh_data() -> None:
    lo, hi = cal.uncertain_band(*_overlapping(seed=3), 0.5, precision=0.95)
    scores, labels = _overlapping(seed=4)
    wrong = (scores >= 0.5) != (labels == 1)
    inside = (scores >= lo) & (scores < hi)
    assert inside[wrong].mean() > 0.6


def test_uncertain_band_of_a_separable_model_is_empty() -> None:
    scores = np.array([0.05, 0.1, 0.2, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1])
    lo, hi = cal.uncertain_band(scores, labels, 0.5)
    assert lo == hi == 0.5


def test_uncertain_band_side_without_enough_precision_reaches_the_end() -> None:
    scores = np.array([0.1, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 0])  # no ai at all: no cut makes "ai" precise
    lo, hi = cal.uncertain_band(scores, labels, 0.5)
    assert hi == 1.0 and lo == 0.5


def test_uncertain_band_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="precision"):
        cal.uncertain_band(np.array([0.5]), np.array([1]), 0.5, precision=0.0)
    with pytest.raises(ValueError, match="labels"):
        cal.uncertain_band(np.array([0.5, 0.6]), np.array([1]), 0.5)


def test_the_uncertain_band_never_holds_more_than_its_share() -> None:
    # Two heavily overlapping classes: 0.97 precision needs a wide band; the cap stops it at
    # 5 % of the pictures (2.5 % on each side), and the report says what precision is left.
    rng = np.random.default_rng(3)
    labels = np.repeat([0.0, 1.0], 1000)
    scores = cal.sigmoid(rng.normal(np.where(labels > 0, 0.8, -0.8), 1.0))
    wide = cal.uncertain_band(scores, labels, 0.5, precision=0.97)
    capped = cal.uncertain_band(scores, labels, 0.5, precision=0.97, max_share=0.05)
    share = lambda band: float(((scores >= band[0]) & (scores < band[1])).mean())  # noqa: E731
    assert share(wide) > 0.3
    assert 0.045 <= share(capped) <= 0.05
    assert wide[0] <= capped[0] <= 0.5 <= capped[1] <= wide[1]
    below = ((scores >= capped[0]) & (scores < 0.5)).sum()
    above = ((scores >= 0.5) & (scores < capped[1])).sum()
    assert below <= 50 and above <= 50
    report = cal.band_report(scores, labels, capped, 0.5)
    assert report["uncertain_share"] == pytest.approx(share(capped))
    assert 0.5 < report["ai_precision"] < 0.97 and 0.5 < report["real_precision"] < 0.97
    # A band already narrow enough is left as it is.
    assert cal.uncertain_band(scores, labels, 0.5, precision=0.6, max_share=0.05) == (
        cal.uncertain_band(scores, labels, 0.5, precision=0.6)
    )
