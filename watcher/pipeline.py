"""The screening pipeline shared by `scan` and `serve`.

    Discovered --tasks (bounded)--> writer --jobs (credit)--> decoders --decoded (bounded)-->
    batcher --Screened--> writer (store, then move)

Threads: one writer (the only database writer), `decode_workers` decoders, one batcher.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import cv2

from detector.imageio import LoadLimits
from storage.db import Database
from watcher.batcher import Batcher
from watcher.decoding import DecodeWorker
from watcher.messages import Decoded, Discovered, Job, Verdict, WhenIdle, WriterTask
from watcher.metrics import ServiceMetrics
from watcher.models_watch import ActiveModel, ModelSlot
from watcher.settings import Settings
from watcher.threads import WAKE_S, Worker, put_until
from watcher.writer import DbWriter, WriterOptions

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0


def default_worker_id(settings: Settings) -> str:
    """Stable across restarts of the same daemon, so it can take back its own stale claims."""
    configured = settings.watcher.worker_id.strip()
    if configured:
        return configured
    return f"{socket.gethostname()}:serve:{settings.base_dir}"[:128]


def scan_worker_id() -> str:
    """Unique per scan process: two scans must not release each other's claims."""
    return f"{socket.gethostname()}:scan:{os.getpid()}"


class Pipeline:
    """Queues and threads from a discovered file to a stored verdict."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        active: ActiveModel,
        *,
        worker_id: str,
        scan: bool,
        on_final: Callable[[Verdict], None] | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        w, d = settings.watcher, settings.detector
        self.slot = ModelSlot(active)
        self.tasks: queue.Queue[WriterTask] = queue.Queue(maxsize=max(w.queue_size, 1))
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.decoded: queue.Queue[Decoded | None] = queue.Queue(maxsize=max(2 * d.batch_size, 2))
        options = WriterOptions(
            worker_id=worker_id,
            credit=max(w.queue_size, 1),
            claim_timeout_s=w.claim_timeout_s,
            scan=scan,
            move=w.on_verdict == "move",
            output=Path(w.output),
            inboxes=tuple(Path(p) for p in w.inbox),
            retry_max_s=w.retry_max_s,
            incomplete_hold_s=w.incomplete_hold_s,
            poll_s=min(1.0, max(w.poll_interval_s, 0.05)),
            sidecar=w.sidecar,
        )
        self.writer = DbWriter(
            db,
            options,
            self.tasks,
            self.jobs,
            on_final,
            on_stored=metrics.stored if metrics is not None else None,
        )
        if metrics is not None:
            metrics.watch_queue(lambda: self.writer.in_flight)
        limits = LoadLimits(max_bytes=d.max_file_bytes, max_pixels=d.max_pixels)
        # The decode workers are the pipeline's parallelism beside the model's own threads;
        # OpenCV's thread pool inside each of them (resizes, YuNet) only oversubscribed the
        # cores. The setting is process-wide and OpenCV's only.
        cv2.setNumThreads(1)
        self.decoders = [
            DecodeWorker(
                f"decoder-{n}",
                self.jobs,
                self.decoded,
                self.tasks,
                self.slot,
                limits,
                self.writer,
                provenance=d.provenance,
            )
            for n in range(max(w.decode_workers, 1))
        ]
        self.batcher = Batcher(
            db,
            self.decoded,
            self.tasks,
            self.slot,
            batch_size=d.batch_size,
            max_wait_s=w.max_wait_ms / 1000.0,
            limits=limits,
            writer=self.writer,
            retry_max_s=w.retry_max_s,
            on_batch=metrics.batch if metrics is not None else None,
            upstream_idle=self._upstream_idle,
        )

    def _upstream_idle(self) -> bool:
        """No job waits for a decoder and no decoder is busy: no picture is on its way."""
        return self.jobs.empty() and not any(d.busy for d in self.decoders)

    @property
    def threads(self) -> list[Worker]:
        """Every thread of the pipeline."""
        return [self.writer, *self.decoders, self.batcher]

    def start(self) -> None:
        """Start the writer first: every other stage feeds it."""
        for thread in self.threads:
            thread.start()

    def submit(self, item: Discovered, stopped: threading.Event) -> bool:
        """Hand a discovered file to the writer; waits while the queue is full."""
        return put_until(self.tasks, item, stopped)

    def wait_idle(self, stopped: threading.Event) -> bool:
        """Block until everything submitted so far is stored and moved; False if stopped."""
        task = WhenIdle()
        if not put_until(self.tasks, task, stopped):
            return False
        while not stopped.is_set():
            try:
                task.reply.result(timeout=WAKE_S)
                return True
            except FutureTimeout:
                if not self.writer.is_alive():
                    return False
        return False

    def dead_thread(self) -> Worker | None:
        """A pipeline thread that died although nobody stopped it."""
        for thread in self.threads:
            started = thread.ident is not None
            if started and not thread.is_alive() and thread.should_keep_running():
                return thread
        return None

    def stop(self) -> None:
        """Finish the batch in flight, store what is queued, requeue the rest; join all."""
        for thread in (*self.decoders, self.batcher):
            thread.stop()
        for thread in (*self.decoders, self.batcher):
            _join(thread)
        # Only now: the batch that was in flight has reached the writer's queue.
        self.writer.stop()
        _join(self.writer)


def _join(thread: threading.Thread) -> None:
    if thread.ident is None:
        return
    thread.join(JOIN_TIMEOUT_S)
    if thread.is_alive():
        logger.error("thread %s did not stop within %.0f s", thread.name, JOIN_TIMEOUT_S)
