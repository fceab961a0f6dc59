"""Child processes measured exactly: wall time and peak RSS (from wait4's rusage)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


class BenchmarkError(RuntimeError):
    """A measurement could not be made (a child failed, timed out or produced no verdict)."""


@dataclass(frozen=True, slots=True)
class ProcResult:
    """How a finished child process went."""

    returncode: int
    wall_s: float
    # Peak resident set size of the child itself (ru_maxrss of its own rusage).
    peak_rss_mb: float
    # CPU seconds (user + system, all threads) the child used: barely moved by other load.
    cpu_s: float
    started_wall: float
    ended_wall: float
    log: Path


class Child:
    """A child process reaped by wait4 in a thread, so its own peak RSS is known exactly.

    RUSAGE_CHILDREN would report the largest of *all* children so far (e.g. an earlier
    TensorFlow run); wait4 gives this one child's rusage.
    """

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = log.open("wb")
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self._proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT, env=env or child_env()
        )
        self.pid = self._proc.pid
        self._done = threading.Event()
        self._result: ProcResult | None = None
        threading.Thread(target=self._reap, name=f"reap-{self.pid}", daemon=True).start()

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.pid, 0)
        ended = time.perf_counter()
        code = os.waitstatus_to_exitcode(status)
        # Popen must not try to reap the pid again (it would see ECHILD and guess 0).
        self._proc.returncode = code
        self._out.close()
        self._result = ProcResult(
            returncode=code,
            wall_s=ended - self.started,
            peak_rss_mb=usage.ru_maxrss / 1024.0,  # KiB on Linux
            cpu_s=usage.ru_utime + usage.ru_stime,
            started_wall=self.started_wall,
            ended_wall=time.time(),
            log=self.log,
        )
        self._done.set()

    @property
    def running(self) -> bool:
        """True until the child has exited."""
        return not self._done.is_set()

    def elapsed(self) -> float:
        """Seconds since the child was started."""
        return time.perf_counter() - self.started

    def wait(self, timeout_s: float) -> ProcResult:
        """Wait for the exit; kill and raise BenchmarkError after `timeout_s`."""
        if not self._done.wait(timeout_s):
            self.signal(signal.SIGKILL)
            self._done.wait(10.0)
            raise BenchmarkError(
                f"{self.log.stem} did not finish in {timeout_s:.0f} s: {tail(self.log)}"
            )
        assert self._result is not None
        return self._result

    def signal(self, sig: int) -> None:
        """Send `sig` unless the child is gone already."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 60.0) -> ProcResult:
        """SIGTERM (the daemon's clean stop), then wait."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            self.signal(signal.SIGKILL)
            self._done.wait(10.0)


def child_env() -> dict[str, str]:
    """The environment for children: quiet TensorFlow, no GPU, project on the path."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("DEEPFAKE_DETECTOR_CONFIG", None)
    return env


def run_child(cmd: list[str], log: Path, timeout_s: float) -> ProcResult:
    """Run `cmd` to completion; BenchmarkError when it fails."""
    result = Child(cmd, log).wait(timeout_s)
    if result.returncode != 0:
        raise BenchmarkError(f"{' '.join(cmd[-3:])} exited {result.returncode}: {tail(log)}")
    return result


def tail(log: Path, lines: int = 8) -> str:
    """The last lines of a child's log, for error messages."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
