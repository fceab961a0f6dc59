"""The promotion gate compares candidate and champion metrics overall and per source."""

from __future__ import annotations

from typing import Any

from training.gate import Decision, decide


def metrics(acc: float, auc: float = 0.99, **sources: float) -> dict[str, Any]:
    return {
        "accuracy": acc,
        "roc_auc": auc,
        "per_source": {k: {"accuracy": v, "support": 100} for k, v in sources.items()},
    }


def test_no_champion_promotes() -> None:
    d = decide(metrics(0.9), None)
    assert d == Decision(True, ["no champion to compare with"])
    assert d.to_dict() == {"promote": True, "reasons": ["no champion to compare with"]}


def test_better_candidate_is_promoted() -> None:
    d = decide(metrics(0.95, 0.99, a=0.95, b=0.96), metrics(0.90, 0.97, a=0.9, b=0.9))
    assert d.promote
    assert "no worse" in d.reasons[0]


def test_worse_overall_is_rejected_beyond_margin_only() -> None:
    cand, champ = metrics(0.895), metrics(0.90)
    rejected = decide(cand, champ, margin=0.0)
    assert not rejected.promote
    assert "accuracy 0.8950 is below" in rejected.reasons[0]
    assert decide(cand, champ, margin=0.01).promote


def test_one_worse_source_vetoes_even_when_overall_is_better() -> None:
    cand = metrics(0.97, 0.995, ffhq=0.80, stylegan=0.99)
    champ = metrics(0.93, 0.990, ffhq=0.90, stylegan=0.95)
    d = decide(cand, champ, margin=0.0, source_margin=0.05)
    assert not d.promote
    assert d.reasons == [
        "source ffhq: accuracy 0.8000 is below the champion's 0.9000 by more than 0.0500"
    ]


def test_missing_source_and_missing_metrics() -> None:
    d = decide(metrics(0.99, 0.99, a=0.99), metrics(0.9, 0.9, a=0.9, b=0.9))
    assert not d.promote and "source b" in d.reasons[0]
    d = decide({"accuracy": 0.99}, metrics(0.9))
    assert not d.promote and d.reasons == ["candidate has no roc_auc metric"]


def test_tiny_sources_cannot_veto() -> None:
    cand = metrics(0.95, 0.99)
    cand["per_source"] = {"rare": {"accuracy": 0.5, "support": 3}}
    champ = metrics(0.95, 0.99)
    champ["per_source"] = {"rare": {"accuracy": 1.0, "support": 3}}
    assert decide(cand, champ).promote


def test_metrics_on_different_data_are_not_compared() -> None:
    cand = {**metrics(0.99), "data_fingerprint": "aaa"}
    champ = {**metrics(0.50), "data_fingerprint": "bbb"}
    d = decide(cand, champ)
    assert not d.promote and "different data" in d.reasons[0]
