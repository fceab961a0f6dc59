"""Statistics the reports print: two-sample tests with effect sizes, multiple-testing correction,
distribution drift (KS, PSI) and latency percentiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True, slots=True)
class Comparison:
    """Real vs AI on one feature: Welch t-test, Mann-Whitney U and their effect sizes."""

    feature: str
    n_real: int
    n_ai: int
    mean_real: float
    mean_ai: float
    welch_p: float
    mwu_p: float
    cohens_d: float  # (mean_ai - mean_real) / pooled sd
    rank_biserial: float  # P(ai > real) - P(ai < real)
    testable: bool = True


def compare(feature: str, real: Sequence[float], ai: Sequence[float]) -> Comparison:
    """Compare one feature between the classes; constant or tiny samples are marked untestable."""
    r = _finite(real)
    a = _finite(ai)
    nan = float("nan")
    mean_r = float(r.mean()) if r.size else nan
    mean_a = float(a.mean()) if a.size else nan
    if r.size < 3 or a.size < 3 or (np.ptp(r) == 0 and np.ptp(a) == 0):
        return Comparison(feature, r.size, a.size, mean_r, mean_a, nan, nan, nan, nan, False)
    welch = stats.ttest_ind(a, r, equal_var=False)
    mwu = stats.mannwhitneyu(a, r, alternative="two-sided")
    pooled = math.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (r.size - 1) * r.var(ddof=1)) / (a.size + r.size - 2)
    )
    d = (mean_a - mean_r) / pooled if pooled > 0 else nan
    rbc = 2.0 * float(mwu.statistic) / (a.size * r.size) - 1.0
    return Comparison(
        feature, r.size, a.size, mean_r, mean_a, float(welch.pvalue), float(mwu.pvalue), d, rbc
    )


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values); NaN entries stay NaN and are not counted."""
    return _adjust(pvalues, lambda p: np.asarray(stats.false_discovery_control(p, method="bh")))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error); NaN entries stay NaN."""

    def adjust(p: np.ndarray) -> np.ndarray:
        order = np.argsort(p)
        m = p.size
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out = np.empty(m)
        out[order] = np.minimum(stepped, 1.0)
        return out

    return _adjust(pvalues, adjust)


def _adjust(pvalues: Sequence[float], fn: Callable[[np.ndarray], np.ndarray]) -> list[float]:
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = fn(p[ok])
    return out.tolist()


@dataclass(frozen=True, slots=True)
class Drift:
    """How far recent scores moved from the reference (evaluation) scores."""

    n_recent: int
    n_reference: int
    ks_statistic: float
    ks_p: float
    psi: float

    @property
    def verdict(self) -> str:
        """The usual PSI reading: < 0.1 stable, < 0.25 moderate shift, else major shift."""
        if self.psi < 0.1:
            return "stable"
        return "moderate shift" if self.psi < 0.25 else "major shift"


def drift(recent: Sequence[float], reference: Sequence[float], bins: int = 10) -> Drift:
    """Two-sample KS test and population stability index over reference-quantile bins."""
    cur = _finite(recent)
    ref = _finite(reference)
    ks = stats.ks_2samp(cur, ref)
    return Drift(cur.size, ref.size, float(ks.statistic), float(ks.pvalue), psi(cur, ref, bins))


def psi(recent: np.ndarray, reference: np.ndarray, bins: int = 10) -> float:
    """Population stability index; bins are reference deciles so each holds ~10 % of it."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # a constant reference: fall back to fixed bins over [0, 1]
        edges = np.linspace(0.0, 1.0, bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-4  # an empty bin would make the log infinite
    expected = np.histogram(reference, edges)[0] / max(reference.size, 1) + eps
    actual = np.histogram(recent, edges)[0] / max(recent.size, 1) + eps
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> list[float]:
    """Percentiles of the finite values (NaN when there are none)."""
    arr = _finite(values)
    if not arr.size:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(arr, qs)]


def reliability(
    labels: Sequence[int], scores: Sequence[float], bins: int = 10
) -> tuple[list[float], list[float], list[int], float]:
    """Reliability diagram points (mean score, positive rate, count per bin) and the ECE."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(scores, dtype=float)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    conf: list[float] = []
    acc: list[float] = []
    counts: list[int] = []
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        if n:
            conf.append(float(p[mask].mean()))
            acc.append(float(y[mask].mean()))
            counts.append(n)
            ece += n / max(p.size, 1) * abs(acc[-1] - conf[-1])
    return conf, acc, counts, ece
