"""Per-source metrics: accuracy at the threshold and ranking against the other class."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import compute_metrics, format_metrics, per_source_metrics

LABELS = np.array([0, 0, 1, 1, 1, 0, 1], dtype=np.float32)
PROBS = np.array([0.1, 0.6, 0.5, 0.9, 0.8, 0.2, 0.7])
SOURCES = ["cam", "cam", "gen_a", "gen_b", "gen_b", "mixed", "mixed"]


def test_one_class_sources_are_ranked_against_every_image_of_the_other_class() -> None:
    per = per_source_metrics(LABELS, PROBS, SOURCES, threshold=0.55)
    # gen_a's only image (0.5) beats one of the three reals (0.1, 0.6, 0.2): 2/3.
    assert per["gen_a"]["auc_vs_other_class"] == pytest.approx(2 / 3)
    assert per["gen_a"]["accuracy"] == 0.0  # below the threshold: ranked well, still missed
    assert per["gen_b"]["auc_vs_other_class"] == 1.0
    # cam's reals (0.1, 0.6) against the four ai images (0.5, 0.9, 0.8, 0.7): 7 of 8 pairs.
    assert per["cam"]["auc_vs_other_class"] == pytest.approx(7 / 8)
    assert per["mixed"]["auc_vs_other_class"] is None
    assert per["mixed"]["roc_auc"] == 1.0


def test_without_the_other_class_there_is_nothing_to_rank() -> None:
    per = per_source_metrics(np.ones(3, dtype=np.float32), PROBS[:3], ["a", "a", "b"], 0.5)
    assert per["a"]["auc_vs_other_class"] is None


def test_the_text_summary_shows_the_ranking_of_one_class_sources() -> None:
    text = format_metrics(compute_metrics(LABELS, PROBS, SOURCES, 0.55))
    assert "gen_a" in text and "AUC vs other class 0.667" in text
    mixed = next(line for line in text.splitlines() if line.strip().startswith("mixed"))
    assert "AUC vs other class" not in mixed
