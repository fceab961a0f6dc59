"""Who gets called fake: the false-positive rate of real pictures per group of people.

For a screener the bias that matters is a real photograph called AI-generated more often for
people of one age, gender or skin tone than for others. Every attribute column a dataset's
manifest carries is measured (none is known in advance: a user's data may bring others); an
`age` column is put in bands. Groups are small, so every rate comes with its 95 % Wilson
interval, and a group with too few real pictures is shown as such instead of hidden.

The promotion gate refuses a candidate that is clearly worse for some group: its interval lies
entirely above the champion's rate for that group (`gate_failures`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from training.datasets import Sample

AGE_COLUMN: Final[str] = "age"
AGE_BANDS: Final[tuple[tuple[int, int | None], ...]] = (
    (0, 12),
    (13, 19),
    (20, 39),
    (40, 59),
    (60, None),
)
# Fewer real pictures than this in the measured split: the validation split's are pooled in.
POOL_BELOW: Final[int] = 30
# Fewer real pictures than this even pooled: too small to say anything (shown, not hidden).
TOO_SMALL: Final[int] = 10
Z_95: Final[float] = 1.959964


def wilson(failures: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a rate (0, 1 for n = 0)."""
    if n <= 0:
        return (0.0, 1.0)
    p = failures / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def group_of(column: str, value: str) -> str:
    """The group a value falls in: an age band for `age`, else the value itself."""
    if column.lower() != AGE_COLUMN:
        return value
    try:
        age = int(float(value))
    except ValueError:
        return value
    for lo, hi in AGE_BANDS:
        if age >= lo and (hi is None or age <= hi):
            return f"{lo}+" if hi is None else f"{lo}-{hi}"
    return value


def _rate(calls: np.ndarray) -> dict[str, Any]:
    n, fp = len(calls), int(calls.sum())
    lo, hi = wilson(fp, n)
    return {"n": n, "false_positives": fp, "rate": fp / n if n else None, "interval": [lo, hi]}


def false_positive_rates(
    samples: Sequence[Sample],
    probs: np.ndarray,
    threshold: float,
    pool: tuple[Sequence[Sample], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per attribute and group, the share of real pictures called ai, with its interval.

    `pool`: more scored samples (the validation split) pooled in for groups with fewer than
    POOL_BELOW real pictures in `samples`. Returns {} when no sample carries an attribute.
    """
    mine = _real_groups(samples, probs, threshold)
    if not mine:
        return {}
    extra = _real_groups(*pool, threshold) if pool is not None else {}
    real = np.array([s.label == 0 for s in samples])
    overall = _rate((np.asarray(probs) >= threshold)[real])
    attributes: dict[str, dict[str, Any]] = {}
    for (column, group), calls in sorted(mine.items()):
        scope = "measured split"
        if len(calls) < POOL_BELOW and (column, group) in extra:
            calls, scope = np.concatenate([calls, extra[(column, group)]]), "with validation"
        row = {**_rate(calls), "scope": scope, "too_small": len(calls) < TOO_SMALL}
        attributes.setdefault(column, {})[group] = row
    return {
        "threshold": float(threshold),
        "overall": overall,
        "attributes": attributes,
        "worst": _worst(attributes, overall),
    }


def _real_groups(
    samples: Sequence[Sample], probs: np.ndarray, threshold: float
) -> dict[tuple[str, str], np.ndarray]:
    """{(column, group): the calls (True = called ai) of its real pictures}."""
    calls: dict[tuple[str, str], list[bool]] = {}
    for sample, p in zip(samples, np.asarray(probs), strict=True):
        if sample.label != 0:
            continue
        for column, value in sample.attributes:
            calls.setdefault((column, group_of(column, value)), []).append(bool(p >= threshold))
    return {k: np.array(v, bool) for k, v in calls.items()}


def _worst(attributes: Mapping[str, Mapping[str, Any]], overall: Mapping[str, Any]) -> Any:
    """The group with the highest rate among those large enough to say something."""
    rows = [
        (row["rate"], column, group, row)
        for column, groups in attributes.items()
        for group, row in groups.items()
        if not row["too_small"] and row["rate"] is not None
    ]
    if not rows:
        return None
    rate, column, group, row = max(rows, key=lambda r: r[0])
    return {
        "attribute": column,
        "group": group,
        "rate": rate,
        "interval": row["interval"],
        "overall_rate": overall["rate"],
        "ratio_to_overall": rate / overall["rate"] if overall["rate"] else None,
    }


def gate_failures(candidate: Mapping[str, Any], champion: Mapping[str, Any]) -> list[str]:
    """Groups where the candidate is clearly worse: its interval entirely above the champion's
    rate for that group (both measured on the same pictures)."""
    ours, theirs = candidate.get("attributes") or {}, champion.get("attributes") or {}
    failures = []
    for column, groups in sorted(ours.items()):
        for group, row in sorted(groups.items()):
            other = (theirs.get(column) or {}).get(group)
            if other is None or other.get("rate") is None or row.get("rate") is None:
                continue
            if row["interval"][0] > other["rate"]:
                failures.append(
                    f"{column} {group}: false-positive rate {row['rate']:.3f} "
                    f"(95 % interval {row['interval'][0]:.3f}-{row['interval'][1]:.3f}) is "
                    f"clearly above the champion's {other['rate']:.3f}"
                )
    return failures


def format_rates(result: Mapping[str, Any]) -> str:
    """The rates as plain text, one group a line."""
    if not result:
        return "false positives per group: the data names no attributes"
    overall = result["overall"]
    lines = [
        f"false positives of real pictures per group (overall {overall['rate']:.3f}, "
        f"{overall['false_positives']}/{overall['n']}):"
    ]
    for column, groups in result["attributes"].items():
        for group, row in groups.items():
            lo, hi = row["interval"]
            small = "  too small to say" if row["too_small"] else ""
            lines.append(
                f"  {column}={group:<10} {row['false_positives']:>3}/{row['n']:<4} "
                f"rate {row['rate']:.3f} [{lo:.3f}, {hi:.3f}] ({row['scope']}){small}"
            )
    return "\n".join(lines)
