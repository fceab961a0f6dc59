"""The `serve` daemon: observers + intake + pipeline + model watcher (+ scheduler), wired once.

Start order follows the data (writer first), shutdown runs backwards: stop taking in files,
finish the batch in flight, store everything queued, requeue what was claimed but not
screened, join every thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from storage import queries
from storage.db import Database
from watcher.api import ApiContext, ApiServer, Slots, read_token
from watcher.backlog import BacklogProgress
from watcher.intake import EventTracker, InboxHandler, Intake, PathFilter
from watcher.metrics import ServiceMetrics
from watcher.models_watch import ActiveModel, ModelWatcher
from watcher.observers import RootWatches
from watcher.pipeline import Pipeline, default_worker_id
from watcher.settings import Settings, service_state_paths
from watcher.threads import WAKE_S, Worker

logger = logging.getLogger(__name__)


def ensure_inboxes(roots: tuple[Path, ...]) -> None:
    """Create missing inbox folders (OSError when that is impossible)."""
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)


def start_scheduler(settings: Settings, db: Database) -> Any | None:
    """Start the scheduler's jobs (reports, retraining) when the scheduler is enabled."""
    if not settings.scheduler.enabled:
        return None
    from watcher.scheduler import start_scheduler as start

    return start(settings, db)


class Daemon:
    """Everything `serve` runs; `run()` blocks until stop_event is set (or, once, until idle)."""

    def __init__(self, settings: Settings, db: Database, active: ActiveModel, *, once: bool):
        w = settings.watcher
        self.settings = settings
        self.db = db
        self.once = once
        self.stop_event = threading.Event()
        self.roots = tuple(Path(p) for p in w.inbox)
        self.metrics = ServiceMetrics()
        self.pipeline = Pipeline(
            settings,
            db,
            active,
            worker_id=default_worker_id(settings),
            scan=False,
            metrics=self.metrics,
        )
        # The HTTP API: `serve` only, never --once (an unsafe [api] refuses to start here).
        self.api: ApiServer | None = None
        if not once and settings.api.enabled:
            context = ApiContext(
                settings, db, self.pipeline, self.metrics, read_token(settings),
                Slots(settings.api.max_pending),
            )  # fmt: skip
            self.api = ApiServer(context)
        tracker = EventTracker()
        self.watches: RootWatches | None = None
        if not once:
            self.watches = RootWatches(
                self.roots,
                InboxHandler(tracker),
                mode=w.observer,
                poll_interval_s=w.poll_interval_s,
            )
        self.intake = Intake(
            self.roots,
            PathFilter(w.ignore, excluded=(Path(w.output), *service_state_paths(settings))),
            tracker,
            self.pipeline.submit,
            quiet_period_s=w.quiet_period_s,
            rescan_interval_s=0.0 if once else w.rescan_interval_s,
            check_roots=self.watches.check if self.watches is not None else None,
        )
        self.model_watcher: ModelWatcher | None = None
        if not once:
            self.model_watcher = ModelWatcher(
                settings, db, self.pipeline.slot, self.pipeline.tasks, w.model_poll_s
            )
        self.scheduler: Any | None = None
        self.backlog = BacklogProgress(db, self.intake.settled)

    @property
    def threads(self) -> list[Worker]:
        """The daemon's own threads (observers aside)."""
        extra = [self.model_watcher] if self.model_watcher is not None else []
        return [*self.pipeline.threads, self.intake, *extra]

    def run(self) -> int:
        """Start, wait, shut down; 0 on a requested stop, 1 when a thread died."""
        try:
            self.start()
            return self._wait_once() if self.once else self._wait()
        finally:
            self.shutdown()

    def start(self) -> None:
        """Start every part, the writer first and the intake last."""
        ensure_inboxes(self.roots)
        self._requeue_own_claims()
        self.pipeline.start()
        if self.api is not None:
            self.api.start()
            if not self.api.started_ok():
                self.api = None  # the address is taken: said in the log, screening goes on
        if self.watches is not None:
            self.watches.start()
        self.intake.start()
        self.backlog.start()
        if self.model_watcher is not None:
            self.model_watcher.start()
        if not self.once:
            try:
                self.scheduler = start_scheduler(self.settings, self.db)
            except Exception:  # reports and retraining are extras; screening goes on
                logger.exception("scheduler failed to start; serving without it")

    def _requeue_own_claims(self) -> None:
        """Files this daemon had claimed when it last died go straight back to the queue.

        Other workers' claims are left alone until they are claim_timeout_s old.
        """
        worker = self.pipeline.writer.worker_id
        released = self.db.retrying(lambda s: queries.release_claims(s, worker))
        if released:
            logger.info("requeued %d file(s) claimed by a previous run of %s", released, worker)

    def _dead(self) -> Worker | None:
        for thread in self.threads:
            if thread.ident is not None and not thread.is_alive() and thread.should_keep_running():
                return thread
        return None

    def _wait(self) -> int:
        while not self.stop_event.wait(WAKE_S * 2):
            dead = self._dead()
            if dead is not None:
                logger.error("thread %s stopped unexpectedly; shutting down", dead.name)
                return 1
        return 0

    def _wait_once(self) -> int:
        """--once: until the start-up scan is screened and moved."""
        while not self.stop_event.is_set():
            if self._dead() is not None:
                return 1
            if not self.intake.settled():
                self.stop_event.wait(WAKE_S)
                continue
            if self.pipeline.wait_idle(self.stop_event) and self.intake.settled():
                logger.info("--once: everything in the inbox is screened; exiting")
                return 0
        return 0

    def shutdown(self) -> None:
        """Stop taking in files, finish or requeue what is in flight, join every thread."""
        self.stop_event.set()
        if self.api is not None:
            self.api.stop()  # no new uploads; those waiting are answered as the writer stops
        self.backlog.close()
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown()
            except Exception:
                logger.exception("scheduler shutdown failed")
        if self.watches is not None:
            self.watches.stop()
        for thread in (self.intake, self.model_watcher):
            if thread is not None:
                thread.stop()
                if thread.ident is not None:
                    thread.join()
        self.pipeline.stop()
        logger.info("stopped")
