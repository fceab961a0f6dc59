"""Per-daemon figures: files per worker and images per busy second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reports.workers import IDLE_GAP_S, worker_figures

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _batches(worker: str, *batches: tuple[float, int]) -> list[tuple[str, datetime]]:
    """(worker, screened_at) pairs: `count` files stored together `at` seconds after T0."""
    return [(worker, T0 + timedelta(seconds=at)) for at, count in batches for _ in range(count)]


def test_rate_counts_busy_time_only() -> None:
    pauses = _batches("a", (0, 16), (1, 16), (2, 8), (2 + IDLE_GAP_S + 50, 16), (3 + 60, 16))
    figures = worker_figures(pauses + _batches("b", (5, 16)))
    a, b = figures
    assert (a.worker, a.files, a.first_at, a.last_at) == ("a", 72, T0, T0 + timedelta(seconds=63))
    # Busy: 0->1, 1->2 and the batch one second after the pause; the pause itself is idle.
    assert (a.busy_s, a.busy_files) == (3.0, 40)
    assert a.images_per_s is not None and abs(a.images_per_s - 40 / 3) < 1e-9
    assert (b.worker, b.files, b.images_per_s) == ("b", 16, None)  # one batch: no rate


def test_no_screenings_no_figures() -> None:
    assert worker_figures([]) == []
