"""The daemon as a real process: SIGKILL mid-batch loses nothing, SIGTERM stops cleanly.

The SIGKILL and SIGTERM tests run on SQLite and on PostgreSQL (both_databases).
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import BRIGHT, DARK, ImageFactory
from watcher.settings import load_settings

from .conftest import Deployment, running_daemon, serve_process, wait_until


def _backlog(dep: Deployment, image_factory: ImageFactory, n: int) -> list[str]:
    names = []
    for i in range(n):
        name = f"f{i:04d}.jpg"
        color = BRIGHT if i % 2 else DARK
        image_factory(dep.inbox / f"d{i % 3}" / name, size=(96, 96), color=color, seed=i, noise=8.0)
        names.append(name)
    return names


@contextmanager
def _serve(dep: Deployment, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with serve_process(dep.config, dep.root / "serve.log", *args) as proc:
        yield proc


def _states(dep: Deployment) -> Counter[str]:
    return Counter(row.state for row in dep.file_rows())


def _assert_all_sorted_once(dep: Deployment, names: list[str]) -> None:
    rows = dep.file_rows()
    assert sorted(Path(r.path).name for r in rows) == sorted(names)  # one row per file
    odd = [
        (r.path, r.state, r.disposition, r.reason)
        for r in rows
        if r.state != "classified" or r.disposition != "moved"
    ]
    assert not odd
    placed = [name for folder in dep.sorted_files().values() for name in folder]
    assert sorted(placed) == sorted(names)  # each file sorted exactly once, no "(1)" copies
    assert not [p for p in dep.inbox.rglob("*") if p.is_file()]
    assert dep.prediction_count() == len(names)


def _frozen_in_flight(dep: Deployment, proc: subprocess.Popen[bytes]) -> Counter[str]:
    """Stop the daemon (SIGSTOP) at a moment with files claimed and some screened; its states."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        wait_until(
            lambda: (s := _states(dep))["classified"] >= 10 and s["claimed"] > 0,
            timeout=60,
            interval=0.005,
            what="screening under way",
        )
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.05)  # a COMMIT already sent: PostgreSQL finishes it without the client
        states = _states(dep)
        if states["claimed"] > 0:
            return states
        proc.send_signal(signal.SIGCONT)  # between two batches: try again
    raise AssertionError("never saw files in flight")


@pytest.mark.both_databases
def test_sigkill_mid_batch_then_restart_screens_every_file_exactly_once(
    deployment: Deployment, image_factory: ImageFactory, caplog: pytest.LogCaptureFixture
) -> None:
    deployment.write_config(queue_size=32)
    names = _backlog(deployment, image_factory, 300)
    with _serve(deployment) as proc:
        # Kill while files are claimed (in the pipeline) and others already screened. The
        # daemon is frozen (SIGSTOP) before its state is read: a state read while it runs could
        # be gone by the time the kill lands (the batch stored, nothing claimed yet: this test
        # failed that way once under load), and a frozen daemon is killed in the state seen.
        at_kill = _frozen_in_flight(deployment, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert _states(deployment) == at_kill, "the frozen daemon changed nothing before the kill"
    assert at_kill["claimed"] > 0 and at_kill["classified"] >= 10
    assert sum(at_kill.values()) <= len(names)
    caplog.set_level(logging.INFO, logger="watcher")
    with running_daemon(load_settings(deployment.config), once=True) as daemon:
        wait_until(lambda: not daemon.pipeline.writer.is_alive(), timeout=120, what="--once")
    _assert_all_sorted_once(deployment, names)
    assert "requeued" in caplog.text  # the restart took back the dead run's claims at once


@pytest.mark.both_databases
def test_sigterm_finishes_the_batch_requeues_the_rest_and_exits_0(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    deployment.write_config(queue_size=32)
    names = _backlog(deployment, image_factory, 120)
    with _serve(deployment) as proc:
        wait_until(lambda: _states(deployment)["classified"] > 0, timeout=60, interval=0.005)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    log = (deployment.root / "serve.log").read_text()
    # The start-up banner says where to drop files and how to see results.
    assert str(deployment.inbox) in log and re.search(r"Results: .+ verdicts", log)
    assert "received SIGTERM" in log and "watcher.daemon: stopped" in log
    assert "Traceback" not in log
    states = _states(deployment)
    assert states["claimed"] == 0, states  # finished or handed back, never left claimed
    assert not [r for r in deployment.file_rows() if r.disposition == "pending"]
    with running_daemon(load_settings(deployment.config), once=True) as daemon:
        wait_until(lambda: not daemon.pipeline.writer.is_alive(), timeout=120, what="--once")
    _assert_all_sorted_once(deployment, names)


@pytest.mark.slow
def test_large_backlog_at_start_up(deployment: Deployment, image_factory: ImageFactory) -> None:
    deployment.write_config(queue_size=64)
    names = _backlog(deployment, image_factory, 1000)
    with running_daemon(load_settings(deployment.config), once=True) as daemon:
        wait_until(lambda: not daemon.pipeline.writer.is_alive(), timeout=300, what="--once")
        assert daemon.pipeline.writer.peak_in_flight <= 64
    _assert_all_sorted_once(deployment, names)
