"""The picture's score from its whole-view and face-view logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.scoring import CombineRule


def test_a_model_without_a_rule_is_plain_temperature_scaling() -> None:
    rule = CombineRule.from_meta({}, temperature=2.0)
    assert rule.logit(3.0, []) == pytest.approx(1.5)
    assert rule.logit(3.0, [10.0]) == pytest.approx(1.5)  # no face weight: faces ignored


def test_the_best_face_counts_and_a_picture_without_faces_uses_its_own_rule() -> None:
    rule = CombineRule(whole=0.5, face=2.0, bias=-1.0, whole_only=1.5, bias_only=0.25)
    assert rule.logit(1.0, [-3.0, 2.0]) == pytest.approx(0.5 + 4.0 - 1.0)
    assert rule.logit(1.0, []) == pytest.approx(1.75)
    whole, face = np.array([1.0, 1.0]), np.array([2.0, np.nan])
    has = np.array([True, False])
    got = rule.logits(whole, np.nan_to_num(face), has)
    assert got.tolist() == pytest.approx([3.5, 1.75])


def test_stored_rules_round_trip_and_bad_ones_are_refused() -> None:
    rule = CombineRule(whole=0.5, face=2.0, bias=-1.0, whole_only=1.5, bias_only=0.25)
    assert CombineRule.from_meta(rule.to_dict(), 1.0) == rule
    with pytest.raises(ValueError, match="non-finite"):
        CombineRule.from_meta(rule.to_dict() | {"face": math.inf}, 1.0)
