"""The two verdicts a model can give; class index 0 is real, 1 is ai."""

from __future__ import annotations

import enum


class Label(enum.StrEnum):
    """Verdict for one image; scores are always P(ai)."""

    REAL = "real"
    AI = "ai"

    @property
    def class_index(self) -> int:
        """Class index used by models and datasets (real = 0, ai = 1)."""
        return 0 if self is Label.REAL else 1

    @classmethod
    def from_index(cls, index: int) -> Label:
        """The label for a class index (0 = real, 1 = ai)."""
        if index not in (0, 1):
            raise ValueError(f"class index must be 0 or 1, got {index!r}")
        return cls.REAL if index == 0 else cls.AI
