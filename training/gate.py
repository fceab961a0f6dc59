"""The promotion gate: may a freshly trained candidate replace the champion? (pure function)

Both metric dicts must come from `training.evaluate` on the SAME data (same fingerprint):
comparing accuracies measured on different images says nothing about which model is better.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from training import fairness

logger = logging.getLogger(__name__)

# Overall metrics compared; the candidate may trail the champion by at most `margin` on each.
GATED_METRICS: tuple[str, ...] = ("accuracy", "roc_auc")
# A source with fewer images than this is too noisy to veto a promotion on its own.
MIN_SOURCE_SUPPORT = 20


@dataclass(frozen=True, slots=True)
class Decision:
    """Promote or not, and every reason that led there (human-readable)."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored in model_versions.decision / training_runs.decision."""
        return {"promote": self.promote, "reasons": list(self.reasons)}


def decide(
    candidate_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
    margin: float = 0.0,
    source_margin: float = 0.01,
) -> Decision:
    """Promote when the candidate is no worse than the champion (within margins) overall and
    on every source the champion was measured on, and not clearly worse for any group of
    people (training.fairness)."""
    problems = _candidate_problems(candidate_metrics)
    if problems:
        return Decision(False, problems)
    if champion_metrics is None:
        return Decision(True, ["no champion to compare with"])
    cand_fp = candidate_metrics.get("data_fingerprint")
    champ_fp = champion_metrics.get("data_fingerprint")
    if cand_fp and champ_fp and cand_fp != champ_fp:
        return Decision(False, ["metrics were measured on different data; re-evaluate both"])
    failures = _overall_failures(candidate_metrics, champion_metrics, margin)
    failures += _source_failures(candidate_metrics, champion_metrics, source_margin)
    failures += fairness.gate_failures(
        candidate_metrics.get("fairness") or {}, champion_metrics.get("fairness") or {}
    )
    if failures:
        return Decision(False, failures)
    return Decision(True, _summary(candidate_metrics, champion_metrics))


def _candidate_problems(metrics: Mapping[str, Any]) -> list[str]:
    missing = [name for name in GATED_METRICS if not _is_number(metrics.get(name))]
    return [f"candidate has no {name} metric" for name in missing]


def _overall_failures(
    cand: Mapping[str, Any], champ: Mapping[str, Any], margin: float
) -> list[str]:
    failures = []
    for name in GATED_METRICS:
        if not _is_number(champ.get(name)):
            continue  # a champion without this metric cannot veto on it
        ours, theirs = float(cand[name]), float(champ[name])
        if ours < theirs - margin:
            failures.append(
                f"{name} {ours:.4f} is below the champion's {theirs:.4f}"
                f" by more than the margin {margin:.4f}"
            )
    return failures


def _source_failures(cand: Mapping[str, Any], champ: Mapping[str, Any], margin: float) -> list[str]:
    failures = []
    cand_sources = cand.get("per_source") or {}
    for source, theirs in sorted((champ.get("per_source") or {}).items()):
        ours = cand_sources.get(source)
        if ours is None:
            failures.append(f"source {source}: candidate was not measured on it")
            continue
        if int(ours.get("support", 0)) < MIN_SOURCE_SUPPORT:
            continue
        if float(ours["accuracy"]) < float(theirs["accuracy"]) - margin:
            failures.append(
                f"source {source}: accuracy {float(ours['accuracy']):.4f} is below the"
                f" champion's {float(theirs['accuracy']):.4f} by more than {margin:.4f}"
            )
    return failures


def _summary(cand: Mapping[str, Any], champ: Mapping[str, Any]) -> list[str]:
    parts = []
    for name in GATED_METRICS:
        if _is_number(champ.get(name)):
            parts.append(f"{name} {float(cand[name]):.4f} vs {float(champ[name]):.4f}")
        else:
            parts.append(f"{name} {float(cand[name]):.4f} (champion: not measured)")
    return ["candidate is no worse than the champion: " + ", ".join(parts)]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
