"""`scan`: screen given files and folders now, through the same pipeline the daemon uses."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from storage.db import Database
from storage.models import FileState
from watcher.intake import PathFilter, walk_files
from watcher.messages import ORIGIN_SCAN, Discovered, Verdict
from watcher.models_watch import open_initial_model
from watcher.pipeline import Pipeline, scan_worker_id
from watcher.settings import Settings, service_state_paths
from watcher.threads import WAKE_S, Worker

logger = logging.getLogger(__name__)


def expand_targets(args: list[str]) -> tuple[list[Path], list[str]]:
    """Absolute paths of the arguments that exist, and the arguments that do not."""
    found: list[Path] = []
    missing: list[str] = []
    for arg in args:
        # Resolved: a symlink named on the command line is what the user means to screen.
        path = Path(arg).expanduser().resolve()
        if os.path.lexists(path):
            found.append(path)
        else:
            missing.append(arg)
    return found, missing


class ScanFeeder(Worker):
    """Walks the targets and submits each file once, never more than `credits` ahead."""

    def __init__(
        self,
        targets: list[Path],
        path_filter: PathFilter,
        submit: Callable[[Discovered, threading.Event], bool],
        credits: threading.Semaphore,
    ) -> None:
        super().__init__("scan-feeder")
        self._targets = targets
        self._filter = path_filter
        self._submit = submit
        self._credits = credits
        self.submitted = 0
        self.done = threading.Event()

    def paths(self) -> Iterator[Path]:
        """Every file to screen, each once (folders walked, ignore patterns applied)."""
        seen: set[Path] = set()
        for target in self._targets:
            walked = walk_files(target, self._filter) if target.is_dir() else iter((target,))
            for path in walked:
                if path not in seen:
                    seen.add(path)
                    yield path

    def loop(self) -> None:
        """Submit every file, then set `done`."""
        for path in self.paths():
            while not self._credits.acquire(timeout=WAKE_S):
                if not self.should_keep_running():
                    return
            try:
                st = os.lstat(path)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime_ns = 0, 0  # vanished: the decoder records it as such
            if not self._submit(
                Discovered(str(path), size, mtime_ns, ORIGIN_SCAN), self.stopped_event
            ):
                return
            self.submitted += 1
        self.done.set()


@dataclass
class ScanTally:
    """Counts for the progress line and the summary."""

    started: float = field(default_factory=time.monotonic)
    real: int = 0
    ai: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        """Files reported so far."""
        return self.real + self.ai + self.rejected

    def add(self, verdict: Verdict) -> None:
        """Count one verdict."""
        if verdict.status != FileState.CLASSIFIED:
            self.rejected += 1
        elif verdict.label == "ai":
            self.ai += 1
        else:
            self.real += 1

    def summary(self) -> str:
        """One line: how many of each, and how fast."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (
            f"{self.total} file(s): {self.real} real, {self.ai} ai, {self.rejected} rejected "
            f"in {elapsed:.1f} s ({self.total / elapsed:.0f} files/s)"
        )


# emit(verdict or None while waiting, tally, total once known): prints and draws progress.
Emit = Callable[[Verdict | None, ScanTally, int | None], None]


class ScanFailed(RuntimeError):
    """The scan itself could not finish (a pipeline thread died)."""


def run_scan(
    settings: Settings,
    db: Database,
    targets: list[Path],
    emit: Emit,
) -> ScanTally:
    """Screen `targets`; emit() gets each file's verdict once, in completion order."""
    results: queue.Queue[Verdict] = queue.Queue()
    active = open_initial_model(settings, db)
    pipeline = Pipeline(
        settings, db, active, worker_id=scan_worker_id(), scan=True, on_final=results.put
    )
    credits = threading.Semaphore(max(4 * settings.watcher.queue_size, 64))
    path_filter = PathFilter(settings.watcher.ignore, excluded=service_state_paths(settings))
    feeder = ScanFeeder(targets, path_filter, pipeline.submit, credits)
    tally = ScanTally()
    pipeline.start()
    feeder.start()
    try:
        _collect(pipeline, feeder, results, credits, tally, emit)
    finally:
        feeder.stop()
        feeder.join()
        pipeline.stop()
    return tally


def _collect(
    pipeline: Pipeline,
    feeder: ScanFeeder,
    results: queue.Queue[Verdict],
    credits: threading.Semaphore,
    tally: ScanTally,
    emit: Emit,
) -> None:
    while not (feeder.done.is_set() and tally.total >= feeder.submitted):
        try:
            verdict = results.get(timeout=WAKE_S)
        except queue.Empty:
            dead = pipeline.dead_thread() or (feeder if feeder.crashed else None)
            if dead is not None:
                raise ScanFailed(f"thread {dead.name} stopped unexpectedly") from dead.crashed
            emit(None, tally, feeder.submitted if feeder.done.is_set() else None)
            continue
        credits.release()
        tally.add(verdict)
        emit(verdict, tally, feeder.submitted if feeder.done.is_set() else None)
