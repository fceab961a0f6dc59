"""The picture's score from its whole-view and face-view logits."""

from __future__ import annotations

import math
from pathlib import Path

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


def test_many_views_are_scored_in_bounded_calls_with_the_same_results(face_bundle: Path) -> None:
    from detector.classifier import MAX_VIEWS_PER_CALL, Classifier
    from detector.faces import AlignedFace, FaceBox
    from detector.views import Views

    classifier = Classifier.load(face_bundle)
    size = classifier.input_size
    rng = np.random.default_rng(5)
    calls: list[int] = []
    original = classifier.predict_logits

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return original(batch)

    classifier.predict_logits = counting  # type: ignore[method-assign]
    pictures = [
        Views(
            whole=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            faces=tuple(
                AlignedFace(
                    FaceBox(0, 0, 10, 10, 0.9), rng.integers(0, 256, (size, size, 3), np.uint8), 0.0
                )
                for _ in range(2)
            ),
            source_width=size,
            source_height=size,
            format="JPEG",
        )
        for _ in range(40)
    ]
    together = classifier.score_pictures(pictures)
    assert max(calls) <= MAX_VIEWS_PER_CALL and sum(calls) == 120
    alone = [classifier.score_pictures([p])[0] for p in pictures]
    for a, b in zip(together, alone, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)
        assert [f.score for f in a.faces] == pytest.approx([f.score for f in b.faces], abs=1e-6)
