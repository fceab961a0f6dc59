"""A file moved into the inbox from outside (a "created" event) skips the quiet period when its
mtime is old, and only then: a file still being written keeps waiting."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import BRIGHT, DARK, ImageFactory
from watcher.config import DEFAULT_IGNORE
from watcher.intake import CHANGED, CONFIRM_S, EventTracker, Intake, PathFilter
from watcher.messages import Discovered

from .conftest import Deployment, running_daemon, wait_until

# Large, so that "screened well before the quiet period" cannot pass by luck on a slow machine.
QUIET_S = 5.0
HOUR_S = 3600.0


def _age(path: Path, seconds: float) -> None:
    """Give `path` an mtime `seconds` in the past, as a file copied or downloaded long ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _screened_at(dep: Deployment, name: str) -> float | None:
    """time.monotonic() once a verdict for `name` is stored, else None."""
    return time.monotonic() if any(Path(v.path).name == name for v in dep.verdicts()) else None


@pytest.mark.parametrize("observer", ["native", "polling"])
def test_an_old_file_moved_in_is_screened_without_the_quiet_period(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path, observer: str
) -> None:
    settings = deployment.write_config(observer=observer, quiet_period_s=QUIET_S)
    staged = image_factory(tmp_path / "staging" / "old.jpg", color=DARK, noise=5.0)
    _age(staged, HOUR_S)
    with running_daemon(settings):
        moved_at = time.monotonic()
        os.rename(staged, deployment.inbox / "old.jpg")  # same filesystem: keeps its mtime
        screened_at = wait_until(
            lambda: _screened_at(deployment, "old.jpg"), timeout=QUIET_S, what="old.jpg"
        )
    assert screened_at - moved_at < QUIET_S / 2


def test_a_file_written_slowly_keeps_its_quiet_period(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    # Polling: no close event ends the wait early, so only the quiet period can release it.
    settings = deployment.write_config(observer="polling", quiet_period_s=QUIET_S)
    data = image_factory("slow.jpg", color=BRIGHT, size=(256, 256), noise=5.0).read_bytes()
    dest = deployment.inbox / "slow.jpg"
    with running_daemon(settings):
        started = time.monotonic()
        with open(dest, "wb") as fh:
            for start in range(0, len(data), len(data) // 10 + 1):
                fh.write(data[start : start + len(data) // 10 + 1])
                fh.flush()
                time.sleep(0.1)  # the stimulus (a slow writer), not a wait for the daemon
                assert _screened_at(deployment, "slow.jpg") is None
        written = time.monotonic()
        time.sleep(0.5)  # a few poll intervals and confirm windows: long enough to misfire
        assert _screened_at(deployment, "slow.jpg") is None
        screened_at = wait_until(
            lambda: _screened_at(deployment, "slow.jpg"), timeout=4 * QUIET_S, what="slow.jpg"
        )
    assert screened_at - written >= QUIET_S - 0.5  # a quiet period after its last write
    assert screened_at - started >= QUIET_S


class _Collected:
    """A stand-in for the pipeline's submit()."""

    def __init__(self) -> None:
        self.items: list[Discovered] = []

    def __call__(self, item: Discovered, stopped: threading.Event) -> bool:
        self.items.append(item)
        return True


def _old_file_noted(tmp_path: Path, data: bytes) -> tuple[Intake, Path, _Collected]:
    """An old file in an inbox and a created event for it, handled by an intake that is never
    started (the test drives its steps itself)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "old.jpg"
    path.write_bytes(data)
    _age(path, HOUR_S)
    got = _Collected()
    intake = Intake(
        (inbox,),
        PathFilter(DEFAULT_IGNORE),
        EventTracker(),
        got,
        quiet_period_s=QUIET_S,
        rescan_interval_s=0.0,
    )
    intake._handle_note(path, CHANGED)
    return intake, path, got


def test_an_old_file_that_still_grows_falls_back_to_the_quiet_period(tmp_path: Path) -> None:
    """A share whose clock lags ours: old mtime, yet still written. The second look sees it."""
    intake, path, got = _old_file_noted(tmp_path, b"first part")
    assert got.items == []  # not at once: a second look first
    with open(path, "ab") as fh:
        fh.write(b" and more")
    _age(path, HOUR_S - 1)
    time.sleep(CONFIRM_S * 2)
    intake._check_settling()
    assert got.items == []  # it changed: now it waits the whole quiet period
    assert not intake.settled()


def test_an_old_file_that_stays_the_same_goes_after_the_second_look(tmp_path: Path) -> None:
    intake, _, got = _old_file_noted(tmp_path, b"whole file")
    time.sleep(CONFIRM_S * 2)
    intake._check_settling()
    assert [Path(i.path).name for i in got.items] == ["old.jpg"]
    assert got.items[0].size_bytes == len(b"whole file")


def test_a_fresh_file_moved_in_is_complete_at_once_on_native_events(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    # Just written elsewhere (new mtime), then renamed in: inotify says "moved to", not
    # "created", so there is nothing to wait for.
    settings = deployment.write_config(observer="native", quiet_period_s=QUIET_S)
    staged = image_factory(tmp_path / "staging" / "fresh.jpg", color=DARK, noise=5.0)
    with running_daemon(settings):
        moved_at = time.monotonic()
        os.rename(staged, deployment.inbox / "fresh.jpg")
        screened_at = wait_until(
            lambda: _screened_at(deployment, "fresh.jpg"), timeout=QUIET_S, what="fresh.jpg"
        )
    assert screened_at - moved_at < QUIET_S / 2
