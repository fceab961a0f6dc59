"""One score per picture from its view logits (whole, native patch, faces), by the model's rule.

The rule is fitted on the validation split at training time and stored in model.json
(`combine`): a logistic regression on the whole-picture logit, the patch logit (models with a
patch view) and the highest face logit, so a face swap (visible only in the face) and a
generated scene (mostly outside it) both count. A picture without a face is scored on its
other views alone, by a rule fitted on the same split.

One fake face decides: in a group photo the whole view and the patch see mostly real pixels and
outvote a generated face. So where the rule has a face-alone part (`face_alone`), a picture's
logit is never below its best face's own calibrated logit: a confidently generated or swapped
face makes the picture `ai` (or `uncertain`) whatever its surroundings say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

RULE: Final[str] = "max(logistic(whole, patch, max_face), logistic(max_face))"
_WEIGHTS: Final[tuple[str, ...]] = ("whole", "face", "bias", "whole_only", "bias_only")
_OPTIONAL: Final[tuple[str, ...]] = ("patch", "patch_only", "face_alone", "face_alone_bias")


@dataclass(frozen=True, slots=True)
class FaceScore:
    """One face's own score: index (0 = most confident), box (x, y, w, h) in source pixels."""

    index: int
    box: tuple[int, int, int, int]
    detector_score: float
    score: float


@dataclass(frozen=True, slots=True)
class PictureScore:
    """A picture's combined P(ai), its whole view's own P(ai), and its faces'."""

    score: float
    whole_score: float
    faces: tuple[FaceScore, ...] = ()


@dataclass(frozen=True, slots=True)
class CombineRule:
    """With a face: z = whole*l_whole + patch*l_patch + face*max(l_face) + bias, raised to
    face_alone*max(l_face) + face_alone_bias when that is higher (and face_alone is set);
    without a face: z = whole_only*l_whole + patch_only*l_patch + bias_only."""

    whole: float = 1.0
    face: float = 0.0
    bias: float = 0.0
    whole_only: float = 1.0
    bias_only: float = 0.0
    patch: float = 0.0
    patch_only: float = 0.0
    # The best face's own logistic calibration (None: no "one fake face decides" part).
    face_alone: float | None = None
    face_alone_bias: float = 0.0

    @classmethod
    def from_meta(cls, data: Mapping[str, Any], temperature: float) -> CombineRule:
        """The stored rule, or plain temperature scaling of the whole view when there is none."""
        if not data:
            return cls(whole=1.0 / temperature, whole_only=1.0 / temperature)
        values: dict[str, Any] = {k: float(data[k]) for k in _WEIGHTS}
        values.update({k: float(data[k]) for k in _OPTIONAL if data.get(k) is not None})
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"combine rule has a non-finite weight: {values}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for model.json."""
        return {
            "rule": RULE,
            **{k: getattr(self, k) for k in (*_WEIGHTS, *_OPTIONAL)},
        }

    def logit(self, whole: float, faces: Sequence[float], patch: float = 0.0) -> float:
        """The picture's combined logit."""
        has = np.array([len(faces) > 0])
        best = np.array([max(faces) if len(faces) else 0.0])
        return float(self.logits(np.array([whole]), best, has, np.array([patch]))[0])

    def logits(
        self,
        whole: np.ndarray,
        best_face: np.ndarray,
        has_face: np.ndarray,
        patch: np.ndarray | None = None,
    ) -> np.ndarray:
        """Vectorised `logit` for arrays (best_face is ignored where has_face is False)."""
        lp = np.zeros_like(whole) if patch is None else patch
        face = np.where(has_face, best_face, 0.0)
        with_face = self.whole * whole + self.patch * lp + self.face * face + self.bias
        if self.face_alone is not None:
            with_face = np.maximum(with_face, self.face_alone * face + self.face_alone_bias)
        without = self.whole_only * whole + self.patch_only * lp + self.bias_only
        return np.where(has_face, with_face, without)
