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
    from detector.classifier import Classifier
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
    # Full calls of the backend's size, then the rest: the runtime re-plans its memory rarely.
    step = classifier.views_per_call
    assert calls == [step] * (120 // step) + ([120 % step] if 120 % step else [])
    alone = [classifier.score_pictures([p])[0] for p in pictures]
    for a, b in zip(together, alone, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)
        assert [f.score for f in a.faces] == pytest.approx([f.score for f in b.faces], abs=1e-6)


def test_one_fake_face_decides_whatever_the_rest_of_the_picture_says() -> None:
    # A group photo: the whole view and the patch see mostly real pixels (-4, -3) and outvote
    # the one generated face (+3) in the combined rule; the face's own calibration wins.
    rule = CombineRule(
        whole=1.0, patch=1.0, face=0.5, bias=0.0, whole_only=1.0, bias_only=0.0,
        face_alone=1.2, face_alone_bias=-0.5,
    )  # fmt: skip
    assert rule.logit(-4.0, [-2.0, 3.0, -1.0], patch=-3.0) == pytest.approx(1.2 * 3.0 - 0.5)
    # A real face does not pull a picture down: the combined rule still decides there.
    assert rule.logit(2.0, [-3.0], patch=1.0) == pytest.approx(2.0 + 1.0 - 1.5)
    # Without a face the rule's own part decides, and the patch counts there too.
    lenient = CombineRule(whole_only=1.0, patch_only=0.5, bias_only=0.1)
    assert lenient.logit(1.0, [], patch=2.0) == pytest.approx(2.1)
    # Older rules (no patch, no face part) read as before.
    old = {k: v for k, v in rule.to_dict().items() if k not in ("patch", "face_alone")}
    assert CombineRule.from_meta(old, 1.0).face_alone is None
    assert CombineRule.from_meta(rule.to_dict(), 1.0) == rule


def test_the_classifier_reads_the_patch_between_the_whole_view_and_the_faces(
    face_bundle: Path, tmp_path: Path
) -> None:
    import dataclasses

    from detector.bundle import read_meta, write_meta
    from detector.classifier import Classifier
    from detector.faces import AlignedFace, FaceBox
    from detector.views import Views

    meta = read_meta(face_bundle)
    rule = CombineRule(whole=1.0, patch=10.0, face=100.0, bias=0.0, whole_only=1.0)
    bundle = tmp_path / "patched"
    import shutil

    shutil.copytree(face_bundle, bundle)
    write_meta(
        dataclasses.replace(meta, views=("whole", "patch", "face"), combine=rule.to_dict()), bundle
    )
    classifier = Classifier.load(bundle)
    assert classifier.spec.patch and classifier.spec.finder is not None
    size = classifier.input_size
    logits = {0: 1.0, 1: 2.0, 2: 3.0}
    classifier.predict_logits = lambda batch: np.array(  # type: ignore[method-assign]
        [logits[int(v[0, 0, 0])] for v in batch]
    )
    view = {k: np.full((size, size, 3), k, np.uint8) for k in logits}
    face = AlignedFace(FaceBox(0, 0, 10, 10, 0.9), view[2], 0.0)
    picture = Views(view[0], (face,), size, size, "PNG", patch=view[1])
    assert [int(v[0, 0, 0]) for v in picture.stack()] == [0, 1, 2]
    scored = classifier.score_pictures([picture])[0]
    expected = 1.0 * 1.0 + 10.0 * 2.0 + 100.0 * 3.0
    assert scored.score == pytest.approx(1.0 / (1.0 + math.exp(-expected)))
    assert len(scored.faces) == 1
