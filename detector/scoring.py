"""One score per picture from its whole-view and face-view logits, by the model's own rule.

The rule is fitted on the validation split at training time and stored in model.json
(`combine`): a logistic regression on the whole-picture logit and the highest face logit, so a
face swap (visible only in the face) and a generated scene (mostly outside it) both count. A
picture without a face is scored on its whole view alone, by a rule fitted on the same split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

RULE: Final[str] = "logistic(whole_logit, max_face_logit)"


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
    """score = sigmoid(whole * l_whole + face * max(l_face) + bias); without faces
    sigmoid(whole_only * l_whole + bias_only)."""

    whole: float = 1.0
    face: float = 0.0
    bias: float = 0.0
    whole_only: float = 1.0
    bias_only: float = 0.0

    @classmethod
    def from_meta(cls, data: Mapping[str, Any], temperature: float) -> CombineRule:
        """The stored rule, or plain temperature scaling of the whole view when there is none."""
        if not data:
            return cls(whole=1.0 / temperature, whole_only=1.0 / temperature)
        values = {k: float(data[k]) for k in ("whole", "face", "bias", "whole_only", "bias_only")}
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"combine rule has a non-finite weight: {values}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for model.json."""
        return {
            "rule": RULE,
            "whole": self.whole,
            "face": self.face,
            "bias": self.bias,
            "whole_only": self.whole_only,
            "bias_only": self.bias_only,
        }

    def logit(self, whole: float, faces: Sequence[float]) -> float:
        """The picture's combined logit."""
        if len(faces):
            return self.whole * whole + self.face * max(faces) + self.bias
        return self.whole_only * whole + self.bias_only

    def logits(self, whole: np.ndarray, best_face: np.ndarray, has_face: np.ndarray) -> np.ndarray:
        """Vectorised `logit` for arrays (best_face is ignored where has_face is False)."""
        with_face = self.whole * whole + self.face * np.where(has_face, best_face, 0.0) + self.bias
        return np.where(has_face, with_face, self.whole_only * whole + self.bias_only)
