"""The intake thread alone (no observer): start-up scan, quiet periods, rescans, events."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.config import DEFAULT_IGNORE
from watcher.intake import CHANGED, COMPLETE, EventTracker, Intake, PathFilter
from watcher.messages import Discovered

from .conftest import wait_until


class Collected:
    """A stand-in for the pipeline's submit(): records what the intake hands on."""

    def __init__(self) -> None:
        self.items: list[Discovered] = []
        self._lock = threading.Lock()

    def __call__(self, item: Discovered, stopped: threading.Event) -> bool:
        with self._lock:
            self.items.append(item)
        return True

    def names(self) -> list[str]:
        with self._lock:
            return sorted(Path(i.path).name for i in self.items)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def _start(inbox: Path, tracker: EventTracker, got: Collected, **kw: float) -> Intake:
    intake = Intake(
        (inbox,),
        PathFilter(DEFAULT_IGNORE, excluded=(inbox / "out",)),
        tracker,
        got,
        quiet_period_s=kw.get("quiet", 0.3),
        rescan_interval_s=kw.get("rescan", 0.0),
    )
    intake.start()
    return intake


@pytest.fixture
def running() -> Iterator[list[Intake]]:
    started: list[Intake] = []
    yield started
    for intake in started:
        intake.stop()
        intake.join()


def _old(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (time.time() - 60, time.time() - 60))
    return path


def test_startup_scan_streams_existing_files(inbox: Path, running: list[Intake]) -> None:
    _old(inbox / "a.jpg")
    _old(inbox / "sub" / "b.jpg")
    _old(inbox / "out" / "ai" / "sorted.jpg")  # the output folder inside the inbox
    _old(inbox / "@eaDir" / "thumb.jpg")
    got = Collected()
    running.append(intake := _start(inbox, EventTracker(), got))
    wait_until(intake.initial_scan_done.is_set)
    assert got.names() == ["a.jpg", "b.jpg"]


def test_a_fresh_file_waits_for_its_quiet_period(inbox: Path, running: list[Intake]) -> None:
    tracker, got = EventTracker(), Collected()
    running.append(intake := _start(inbox, tracker, got, quiet=0.4))
    wait_until(intake.initial_scan_done.is_set)
    path = inbox / "new.jpg"
    path.write_bytes(b"part")
    tracker.note(str(path), CHANGED)
    seen_at = time.monotonic()
    wait_until(lambda: got.items, what="the file after its quiet period")
    assert time.monotonic() - seen_at >= 0.4
    assert got.items[0].size_bytes == 4


def test_close_after_write_goes_at_once_and_rescan_finds_the_rest(
    inbox: Path, running: list[Intake]
) -> None:
    tracker, got = EventTracker(), Collected()
    running.append(intake := _start(inbox, tracker, got, quiet=30.0, rescan=0.2))
    wait_until(intake.initial_scan_done.is_set)
    (inbox / "closed.jpg").write_bytes(b"done")
    tracker.note(str(inbox / "closed.jpg"), COMPLETE)
    wait_until(lambda: got.names() == ["closed.jpg"], what="the closed file, without waiting")
    _old(inbox / "missed.jpg")  # no event at all: only a rescan can find it
    wait_until(lambda: "missed.jpg" in got.names(), what="the rescan")
    assert got.names().count("closed.jpg") == 1  # a rescan does not hand it on again
