"""One verdict from the model's score and the image's provenance metadata.

The rule (also in the README): a finding that declares AI generation (a C2PA manifest whose
signature validates and whose digital source type is a trained algorithm, the IPTC source type
in XMP, or a generator UI's parameter chunk) makes the label `ai` whatever the model says;
the score is still stored beside it. Nothing in the metadata ever makes a picture `real`:
camera EXIF and the like are shown, never trusted. Otherwise the model decides: `uncertain`
inside its band, `ai` at or above its threshold, `real` below.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from detector.labels import Label
from detector.provenance import Finding, declaring_ai


class DecidedBy(enum.StrEnum):
    """What made the label."""

    MODEL = "model"
    PROVENANCE = "provenance"


@dataclass(frozen=True, slots=True)
class UncertainBand:
    """Scores with lo <= score < hi get the label `uncertain`; lo == hi is an empty band."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        ok = all(isinstance(v, int | float) and math.isfinite(v) for v in (self.lo, self.hi))
        if not ok or not 0.0 <= self.lo <= self.hi <= 1.0:
            got = f"{self.lo!r}, {self.hi!r}"
            raise ValueError(f"uncertain band must be two numbers 0 <= lo <= hi <= 1, got {got}")

    @classmethod
    def of(cls, pair: Sequence[float] | None) -> UncertainBand | None:
        """A band from [lo, hi]; None or [] is no band; ValueError for anything else."""
        if pair is None or len(pair) == 0:
            return None
        if len(pair) != 2:
            raise ValueError(f"uncertain band must be [lo, hi] or [], got {list(pair)!r}")
        return cls(float(pair[0]), float(pair[1]))

    def contains(self, score: float) -> bool:
        """True for a score inside the band."""
        return self.lo <= score < self.hi


@dataclass(frozen=True, slots=True)
class Decision:
    """The label of one image and what decided it."""

    label: Label
    decided_by: DecidedBy


def model_label(score: float, threshold: float, band: UncertainBand | None = None) -> Label:
    """The model's own label: uncertain inside the band, else ai at or above the threshold."""
    if band is not None and band.contains(score):
        return Label.UNCERTAIN
    return Label.AI if score >= threshold else Label.REAL


def decide(
    score: float,
    threshold: float,
    band: UncertainBand | None = None,
    findings: Iterable[Finding] = (),
) -> Decision:
    """Provenance declaring AI wins; otherwise the model's label (see the module docstring)."""
    if declaring_ai(findings) is not None:
        return Decision(Label.AI, DecidedBy.PROVENANCE)
    return Decision(model_label(score, threshold, band), DecidedBy.MODEL)
