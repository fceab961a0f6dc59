"""Per-daemon figures for the operations report: files screened and images per second.

Several daemons may share one database (PostgreSQL); each file is credited to the worker id
that held its claim when it was screened (`[watcher] worker_id`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby, pairwise
from typing import Final

# A longer pause between two stored batches of one daemon is idle time, not work.
IDLE_GAP_S: Final[float] = 10.0


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """What one daemon (worker id) screened in the report's period."""

    worker: str
    files: int
    first_at: datetime
    last_at: datetime
    busy_s: float
    # Files stored during busy_s (not those of a batch that ended a pause).
    busy_files: int

    @property
    def images_per_s(self) -> float | None:
        """Files per busy second; None when there is no busy time to divide by."""
        return self.busy_files / self.busy_s if self.busy_s > 0 else None


def worker_figures(screenings: Iterable[tuple[str, datetime]]) -> list[WorkerFigures]:
    """Figures per worker from (worker, screened_at) pairs sorted by worker, then time.

    A daemon stores a batch at one time. Busy time adds up the gaps between its consecutive
    batches, leaving out gaps longer than IDLE_GAP_S (an empty inbox), and the rate counts
    the files of the batches that ended those gaps; so a daemon that served one burst a day
    is not reported as slow. Most files first.
    """
    figures = []
    for worker, group in groupby(screenings, key=lambda pair: pair[0]):
        batches = Counter(at for _, at in group)
        times = sorted(batches)
        busy_s, busy_files = 0.0, 0
        for before, at in pairwise(times):
            gap = (at - before).total_seconds()
            if gap <= IDLE_GAP_S:
                busy_s += gap
                busy_files += batches[at]
        files = sum(batches.values())
        figures.append(WorkerFigures(worker, files, times[0], times[-1], busy_s, busy_files))
    return sorted(figures, key=lambda f: (-f.files, f.worker))
