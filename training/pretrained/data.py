"""The pictures of a split with their feature rows, and the subsets runs need (hold-outs, the
rows a head is fitted on)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from training.datasets import Sample
from training.pretrained.features import KINDS, PLAIN, SELF_BLEND, Rows


@dataclass(frozen=True, slots=True)
class SplitData:
    """Pictures of one split (those with a plain whole view) and every row computed of them."""

    samples: tuple[Sample, ...]
    rows: Rows  # index: position in `samples`

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """(N,) float32, 0 real, 1 ai."""
        return np.array([s.label for s in self.samples], dtype=np.float32)

    @property
    def sources(self) -> tuple[str, ...]:
        """Source of each picture."""
        return tuple(s.source for s in self.samples)

    @classmethod
    def of(cls, samples: tuple[Sample, ...], rows: Rows) -> SplitData:
        """Keep the pictures that have a plain whole-view row (the others failed to decode)."""
        return cls(samples, rows).pictures(_present(len(samples), rows))

    def pictures(self, keep: np.ndarray) -> SplitData:
        """The pictures where `keep` is True, with their rows (picture indices renumbered)."""
        if keep.all():
            return self
        renumber = np.cumsum(keep) - 1
        rows = self.rows.take(keep[self.rows.index])
        rows = Rows(
            rows.feats, rows.kind, renumber[rows.index].astype(np.int32), rows.passes,
            rows.labels, rows.quality,
        )  # fmt: skip
        return SplitData(tuple(s for s, k in zip(self.samples, keep, strict=True) if k), rows)

    def without(self, sources: Iterable[str]) -> SplitData:
        """The pictures of every other source (rows made from a picture go with it)."""
        names = set(sources)
        return self.pictures(np.array([s.source not in names for s in self.samples], bool))

    def fitting_rows(self, views: tuple[str, ...], self_blend: bool) -> Rows:
        """The rows a head is fitted on: the chosen view kinds, every pass (self-blends only
        when asked)."""
        return self.rows.take(self.fitting_mask(views, self_blend))

    def fitting_mask(self, views: tuple[str, ...], self_blend: bool) -> np.ndarray:
        """Which rows `fitting_rows` keeps."""
        kinds = np.isin(self.rows.kind, [KINDS.index(k) for k in views])
        blends = self.rows.passes == SELF_BLEND
        return kinds & (self_blend | ~blends)

    def row_sources(self) -> np.ndarray:
        """(R,) the source of each row's picture."""
        return np.array(self.sources, dtype=object)[self.rows.index]


def kept_rows(n: int, rows: Rows) -> np.ndarray:
    """(R,) True for the rows `SplitData.of(samples, rows)` keeps, in their order."""
    return _present(n, rows)[rows.index]


def _present(n: int, rows: Rows) -> np.ndarray:
    """(n,) True for the pictures with a plain whole-view row."""
    whole = (rows.passes == PLAIN) & (rows.kind == KINDS.index("whole"))
    present = np.zeros(n, bool)
    present[rows.index[whole]] = True
    return present
