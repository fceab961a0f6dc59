"""Calls that run in a worker process with a time limit.

A hang inside a native library (the c2pa package parses untrusted manifests in Rust) cannot be
interrupted from Python: a thread that calls into it is lost for good. Run in a process of its
own, the call can be abandoned and the process killed; the next call starts a fresh one. The
worker lives between calls (starting one costs some 0.3 s of imports), and dies with us.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger(__name__)


class CallTimedOut(Exception):
    """The call ran past its time limit; its worker process was killed."""


class WorkerDied(Exception):
    """The worker process ended in the middle of the call (a crash in native code)."""


def _serve(fn: Callable[..., Any], conn: Connection) -> None:
    """The worker's loop: one call per message, its result (or exception) sent back."""
    while True:
        try:
            args = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            conn.send((True, fn(*args)))
        except Exception as exc:  # handed to the caller, the worker goes on
            conn.send((False, exc))


class IsolatedCall:
    """`fn(*args)` in a worker process, at most `timeout_s` seconds a call; thread-safe
    (calls are serialised: they are rare, and one worker is enough)."""

    def __init__(self, fn: Callable[..., Any], timeout_s: float) -> None:
        self._fn = fn
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def __call__(self, *args: Any) -> Any:
        """The call's result; CallTimedOut or WorkerDied when the worker failed us."""
        with self._lock:
            conn = self._connection()
            try:
                conn.send(args)
                if not conn.poll(self.timeout_s):
                    self._kill(f"ran past {self.timeout_s:g} s")
                    raise CallTimedOut(f"ran past {self.timeout_s:g} s")
                ok, value = conn.recv()
            except (EOFError, OSError) as exc:
                self._kill("ended in the middle of a call")
                raise WorkerDied(f"the worker process ended: {exc or type(exc).__name__}") from exc
        if not ok:
            raise value
        return value

    def _connection(self) -> Connection:
        if self._conn is None or self._process is None or not self._process.is_alive():
            self._kill()
            # spawn, not fork: forking a process with running threads copies their locks.
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(self._fn, child), daemon=True)
            process.start()
            child.close()
            self._process, self._conn = process, parent
        return self._conn

    def _kill(self, why: str = "") -> None:
        if self._process is not None and self._process.is_alive():
            if why:
                name = getattr(self._fn, "__name__", "a call")
                logger.warning("the worker process of %s %s: killed", name, why)
            self._process.kill()
            self._process.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def close(self) -> None:
        """End the worker process (it also ends with this process)."""
        with self._lock:
            self._kill()
