"""Load: a burst of files dropped at once, then a steady stream; each file screened once.

The default variants are short (300 files + a 15 s stream); the heavy ones (10,000 files, a
10-minute stream) run only with DFD_HEAVY=1.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import BRIGHT, DARK, render_image
from tests.reliability.conftest import census, heavy
from tests.watcher.conftest import Deployment, running_daemon, wait_until

QUEUE = 32


def _rss_mb() -> float:
    """Resident memory of this process (the daemon runs in it), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _stage(folder: Path, start: int, n: int) -> list[Path]:
    """n small distinct images (alternating dark/bright) in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"f{i:05d}.jpg"
        color = BRIGHT if i % 2 else DARK
        render_image((48, 48), color, noise=6.0, seed=i).save(path, "JPEG")
        paths.append(path)
    return paths


def _final_count(dep: Deployment) -> int:
    """Rows in the verdicts view (a COUNT, cheap enough to poll with 10,000 rows)."""
    with sqlite3.connect(dep.root / "db.sqlite", timeout=30) as raw:
        return int(raw.execute("SELECT count(*) FROM verdicts").fetchone()[0])


def _assert_each_screened_once(dep: Deployment, n: int) -> None:
    rows = dep.file_rows()
    names = Counter(Path(r.path).name for r in rows)
    assert len(names) == n and set(names.values()) == {1}, "a file screened twice or missed"
    assert {r.state for r in rows} == {"classified"}
    assert {r.disposition for r in rows} == {"moved"}
    assert dep.prediction_count() == n
    where = census(dep)
    assert where["inbox"] == 0 and where["real"] + where["ai"] == n and not where["rejected"]
    assert len(dep.verdicts()) == n


def _burst_then_stream(dep: Deployment, tmp_path: Path, burst: int, stream_s: float) -> None:
    settings = dep.write_config(queue_size=QUEUE, quiet_period_s=0.3)
    staging = tmp_path / "staging"
    _stage(staging / "burst", 0, burst)
    with running_daemon(settings) as daemon:
        os.rename(staging / "burst", dep.inbox / "burst")  # the whole folder arrives at once
        wait_until(
            lambda: _final_count(dep) == burst, timeout=60 + burst / 20, interval=0.2, what="burst"
        )
        rss_start = _rss_mb()
        sent = burst
        stop_at = time.monotonic() + stream_s
        while time.monotonic() < stop_at:
            (path,) = _stage(staging / "one", sent, 1)
            os.rename(path, dep.inbox / path.name)
            sent += 1
            time.sleep(0.05)  # the stimulus: the stream's pace (~20 files/s)
        wait_until(
            lambda: census(dep)["inbox"] == 0, timeout=60, interval=0.2, what="stream drained"
        )
        wait_until(
            lambda: _final_count(dep) == sent, timeout=30, interval=0.2, what="every verdict"
        )
        rss_growth = _rss_mb() - rss_start
        peak = daemon.pipeline.writer.peak_in_flight
    _assert_each_screened_once(dep, sent)
    assert peak <= QUEUE, f"{peak} files in flight with queue_size {QUEUE}"
    assert rss_growth < 150, f"memory grew by {rss_growth:.0f} MB during the stream"


def test_burst_and_short_stream(deployment: Deployment, tmp_path: Path) -> None:
    _burst_then_stream(deployment, tmp_path, burst=300, stream_s=15.0)


@heavy
@pytest.mark.heavy
def test_ten_thousand_files_and_ten_minute_stream(deployment: Deployment, tmp_path: Path) -> None:
    _burst_then_stream(deployment, tmp_path, burst=10_000, stream_s=600.0)
