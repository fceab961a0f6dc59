"""Stoppable worker threads (the shape of watchdog's BaseThread) and a blocking-put helper."""

from __future__ import annotations

import logging
import queue
import threading
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often a blocked thread wakes up to check whether it was asked to stop.
WAKE_S = 0.2


class Worker(threading.Thread):
    """A thread with `stop()` and a keep-running check; `loop()` holds the work.

    Unlike watchdog's BaseThread the thread records a crash (`crashed`), so the daemon can
    notice a dead stage and exit non-zero instead of silently doing nothing.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stopped = threading.Event()
        self.crashed: BaseException | None = None

    @property
    def stopped_event(self) -> threading.Event:
        """Set once stop() was called."""
        return self._stopped

    def should_keep_running(self) -> bool:
        """False once stop() was called."""
        return not self._stopped.is_set()

    def stop(self) -> None:
        """Ask the thread to finish its current item and exit."""
        self._stopped.set()
        self.on_stop()

    def on_stop(self) -> None:
        """Hook run by stop(), e.g. to wake the thread up."""

    def run(self) -> None:
        """Run loop(); a crash is logged and remembered rather than lost."""
        try:
            self.loop()
        except BaseException as exc:
            self.crashed = exc
            logger.exception("thread %s crashed", self.name)

    def loop(self) -> None:
        """The thread's work; return when should_keep_running() turns false."""
        raise NotImplementedError


def put_until(q: queue.Queue[T], item: T, stopped: threading.Event) -> bool:
    """Put `item`, waiting while `q` is full; False (item dropped) when `stopped` is set."""
    while not stopped.is_set():
        try:
            q.put(item, timeout=WAKE_S)
            return True
        except queue.Full:
            continue
    return False


def put_while_alive(q: queue.Queue[T], item: T, consumer: threading.Thread) -> bool:
    """Put `item` even during shutdown, as long as the thread that drains `q` still runs."""
    while consumer.is_alive():
        try:
            q.put(item, timeout=WAKE_S)
            return True
        except queue.Full:
            continue
    logger.error("%s is gone; dropping %s", consumer.name, type(item).__name__)
    return False
