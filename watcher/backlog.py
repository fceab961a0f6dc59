"""The start-up backlog as a progress bar: files already in the inboxes when the daemon starts
(a folder of 10,000 images takes a while), shown on a terminal's stderr until they are done."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import Final, TextIO

from sqlalchemy.exc import SQLAlchemyError

from storage import queries
from storage.db import Database
from storage.models import utcnow
from watcher import terminal

logger = logging.getLogger(__name__)

POLL_S: Final[float] = 0.5


class BacklogProgress:
    """Polls how many files were screened since start-up and how many wait, and draws the
    bar from a thread of its own (the daemon's main thread blocks while it waits for idle)."""

    def __init__(
        self, db: Database, settled: Callable[[], bool], *, err: TextIO | None = None
    ) -> None:
        self._db = db
        self._settled = settled
        self._err = err if err is not None else sys.stderr
        self._since = utcnow()
        self._stack = contextlib.ExitStack()
        self._bar: terminal.Bar | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start drawing, only when stderr is a terminal."""
        if terminal.is_terminal(self._err) and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="backlog-progress", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_S):
                if not self.poll():
                    return
        except Exception:  # a progress bar must never take the daemon down
            logger.exception("backlog progress failed")
        finally:
            self._stack.close()

    def poll(self) -> bool:
        """Refresh the bar once; False when the backlog is done (or there was none)."""
        settled = self._settled()
        try:
            with self._db.session() as s:
                done, left = queries.backlog_counts(s, self._since)
        except SQLAlchemyError:
            logger.debug("backlog progress: counting failed", exc_info=True)
            return True
        if self._bar is None:
            if settled and left == 0:
                return False  # nothing was waiting: no bar at all
            self._bar = self._stack.enter_context(
                terminal.progress_bar("start-up backlog", err=self._err)
            )
        text = f"start-up backlog: {done} screened, {left} waiting"
        self._bar.update(completed=done, total=done + left, text=text)
        return not (settled and left == 0)

    def close(self) -> None:
        """Stop and remove the bar (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
