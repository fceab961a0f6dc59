"""False positives of real pictures per group of people: rates, intervals, the gate."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import write_face
from training import fairness, gate
from training.datasets import Sample, load_layout


def _sample(label: int, **attributes: str) -> Sample:
    return Sample(Path(f"/x/{id(attributes)}.jpg"), label, "test", "src", tuple(attributes.items()))


def test_wilson_intervals_match_the_textbook() -> None:
    lo, hi = fairness.wilson(1, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.0179, 0.4042)
    assert fairness.wilson(0, 1)[0] == 0.0 and fairness.wilson(0, 1)[1] == pytest.approx(
        0.7935, abs=1e-4
    )
    assert fairness.wilson(0, 0) == (0.0, 1.0)


def test_rates_per_group_with_a_group_of_one_and_a_column_nobody_knew() -> None:
    samples = (
        [_sample(0, skin_type="I", age="25")] * 20
        + [_sample(0, skin_type="VI", age="70")]
        + [_sample(1, skin_type="I", age="25")] * 5
    )
    # Four of the twenty type-I real pictures called ai; the one type-VI picture too.
    probs = np.array([0.9] * 4 + [0.1] * 16 + [0.95] + [0.9] * 5)
    result = fairness.false_positive_rates(samples, probs, threshold=0.5)
    groups = result["attributes"]
    assert set(groups) == {"skin_type", "age"}
    one = groups["skin_type"]["VI"]
    assert (one["n"], one["false_positives"], one["rate"], one["too_small"]) == (1, 1, 1.0, True)
    assert one["interval"][0] == pytest.approx(fairness.wilson(1, 1)[0])
    many = groups["skin_type"]["I"]
    assert (many["n"], many["false_positives"], many["too_small"]) == (20, 4, False)
    assert many["interval"] == pytest.approx(list(fairness.wilson(4, 20)))
    # Ages in bands; fake pictures never count.
    assert set(groups["age"]) == {"20-39", "60+"}
    assert result["overall"]["n"] == 21 and result["overall"]["false_positives"] == 5
    # The worst group among those large enough to say something (the group of one is not).
    assert result["worst"]["group"] in ("I", "20-39") and result["worst"]["rate"] == pytest.approx(
        0.2
    )
    assert "too small to say" in fairness.format_rates(result)


def test_small_groups_pool_the_validation_split() -> None:
    test = [_sample(0, gender="female")] * 5
    validate = [_sample(0, gender="female")] * 40
    result = fairness.false_positive_rates(
        test, np.full(5, 0.9), 0.5, pool=(validate, np.full(40, 0.1))
    )
    row = result["attributes"]["gender"]["female"]
    assert row["n"] == 45 and row["false_positives"] == 5 and row["scope"] == "with validation"


def test_no_attributes_no_figures() -> None:
    assert fairness.false_positive_rates([_sample(0)], np.array([0.9]), 0.5) == {}


def test_the_manifest_attribute_columns_reach_the_samples(tmp_path: Path) -> None:
    rows = []
    for split in ("train", "validate", "test"):
        for label in (0, 1):
            for i in range(3):
                rel = f"{split}/{label}/p{i}.jpg"
                write_face(tmp_path / rel, label, i)
                rows.append(
                    {
                        "path": rel,
                        "source": f"s{label}",
                        "age": str(10 * i + 5) if label == 0 else "",
                        "hair": "red",
                    }
                )
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "source", "age", "hair"])
        writer.writeheader()
        writer.writerows(rows)
    splits = load_layout(tmp_path)
    real = [s for s in splits.test if s.label == 0]
    assert dict(real[0].attributes) == {"age": "5", "hair": "red"}
    fake = [s for s in splits.test if s.label == 1]
    assert dict(fake[0].attributes) == {"hair": "red"}  # empty values are left out


def _metrics(rate: float, n: int) -> dict[str, object]:
    fp = round(rate * n)
    groups = {
        "gender": {
            "female": {
                "n": n,
                "false_positives": fp,
                "rate": fp / n,
                "interval": list(fairness.wilson(fp, n)),
            },
            "male": {
                "n": 200,
                "false_positives": 10,
                "rate": 0.05,
                "interval": list(fairness.wilson(10, 200)),
            },
        }
    }
    return {
        "accuracy": 0.9,
        "roc_auc": 0.95,
        "per_source": {},
        "fairness": {"attributes": groups},
    }


def test_the_gate_refuses_a_candidate_worse_for_one_group_only() -> None:
    champion = _metrics(0.05, 200)
    worse = _metrics(0.20, 200)  # same overall figures, female rate 0.20 vs 0.05
    decision = gate.decide(worse, champion)
    assert not decision.promote
    assert any("gender female" in r and "clearly above" in r for r in decision.reasons)
    # A small group's wide interval is not "clearly" worse.
    assert gate.decide(_metrics(0.2, 10), _metrics(0.1, 10)).promote
    assert gate.decide(champion, champion).promote
