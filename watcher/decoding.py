"""Decode workers: read, hash and decode claimed files while the model runs.

Pillow releases the GIL while decoding, so two threads overlap the model call well.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from pathlib import Path

from detector.errors import ImageRejected
from detector.imageio import LoadLimits, read_file, sha256_bytes
from detector.provenance import read_provenance
from detector.views import ViewSpec
from watcher.messages import VANISHED, Decoded, Job, Outcome, Rejected, Screened, WriterTask
from watcher.models_watch import ModelSlot
from watcher.threads import WAKE_S, Worker, put_until, put_while_alive

logger = logging.getLogger(__name__)


def _not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be screened, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link; links are not followed"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "a device or special file, not a regular file"


def decode_job(
    job: Job, spec: ViewSpec, limits: LoadLimits, *, provenance: bool = True
) -> Decoded | Rejected:
    """Read and decode one claimed file into the views of `spec`; never raises for bad input.

    `provenance`: also read the metadata of the same bytes (bounded; never rejects a file).
    """
    start = time.perf_counter()
    path = Path(job.path)
    try:
        # lstat first: symlinks are not followed and FIFOs are never opened.
        st = os.lstat(path)
    except FileNotFoundError:
        return Rejected(job, VANISHED, "the file disappeared before it was screened")
    except OSError as exc:
        return Rejected(job, "unreadable", f"cannot look at the file: {exc.strerror or exc}")
    why = _not_regular(st.st_mode)
    if why is not None:
        return Rejected(job, "not_a_file", f"not screened: {why}")
    if (st.st_size, st.st_mtime_ns) != (job.size_bytes, job.mtime_ns):
        return _changed(job)
    sha256: str | None = None
    try:
        data = read_file(path, limits)
        sha256 = sha256_bytes(data)
        if len(data) != job.size_bytes:
            return _changed(job, sha256)
        views = spec.decode(data, limits)
    except ImageRejected as exc:
        return Rejected(job, exc.code, exc.reason, sha256)
    findings = read_provenance(data) if provenance else None
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    return Decoded(job, sha256, views, elapsed_ms, findings, spec.key)


def _changed(job: Job, sha256: str | None = None) -> Rejected:
    # This arrival (path, size, mtime) no longer exists; the new content is a new arrival
    # that the watcher picks up again once it is complete.
    reason = "the file changed after it was queued; its new content counts as a new file"
    return Rejected(job, VANISHED, reason, sha256)


class DecodeWorker(Worker):
    """Takes jobs, hands decoded images to the batcher and rejections straight to the writer."""

    def __init__(
        self,
        name: str,
        jobs: queue.Queue[Job | None],
        decoded: queue.Queue[Decoded | None],
        tasks: queue.Queue[WriterTask],
        slot: ModelSlot,
        limits: LoadLimits,
        writer: threading.Thread,
        *,
        provenance: bool = True,
    ) -> None:
        super().__init__(name)
        self._jobs = jobs
        self._decoded = decoded
        self._tasks = tasks
        self._slot = slot
        self._limits = limits
        self._writer = writer
        self._provenance = provenance
        # True from taking a job until its result is handed on (the batcher reads it to know
        # whether more pictures are on their way).
        self.busy = False

    def on_stop(self) -> None:
        """Wake a worker waiting for a job (None means "look at your stop flag")."""
        self._jobs.put(None)

    def loop(self) -> None:
        """Decode until stopped; a job left unfinished stays claimed and is requeued later."""
        while self.should_keep_running():
            try:
                job = self._jobs.get(timeout=WAKE_S)
            except queue.Empty:
                continue
            if job is None:
                continue
            self.busy = True
            try:
                self._hand_on(self._decode(job))
            finally:
                self.busy = False

    def _hand_on(self, item: Decoded | Rejected) -> None:
        if isinstance(item, Decoded):
            put_until(self._decoded, item, self.stopped_event)
        else:
            outcome: Outcome = item
            put_while_alive(self._tasks, Screened((outcome,)), self._writer)

    def _decode(self, job: Job) -> Decoded | Rejected:
        try:
            return decode_job(job, self._slot.spec, self._limits, provenance=self._provenance)
        except Exception as exc:  # a bug or an exotic OS error: reject this file, keep going
            logger.exception("decoding %s failed", job.path)
            return Rejected(job, "unreadable", f"internal error while decoding: {exc}")
