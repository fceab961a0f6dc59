"""The verdicts an image can get; the model's classes are index 0 real and 1 ai."""

from __future__ import annotations

import enum


class Label(enum.StrEnum):
    """Verdict for one image; scores are always P(ai).

    `uncertain` is not a model class: it is the verdict for a score inside the model's uncertain
    band around its threshold, where neither confident label reaches its stated precision.
    """

    REAL = "real"
    AI = "ai"
    UNCERTAIN = "uncertain"

    @property
    def class_index(self) -> int:
        """Class index used by models and datasets (real = 0, ai = 1)."""
        if self is Label.UNCERTAIN:
            raise ValueError("'uncertain' is a verdict, not a model class")
        return 0 if self is Label.REAL else 1
