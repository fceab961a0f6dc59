"""watchdog observers for the inbox folders, re-armed when a folder is removed and recreated."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from watcher.intake import observer_kind

logger = logging.getLogger(__name__)


def native_observer() -> BaseObserver:
    """The platform's native observer; on Linux one reporting moves from outside as moves.

    inotify tells a file moved in from another folder (IN_MOVED_TO, complete at once) from a
    file being written (IN_CREATE); watchdog's default turns both into "created", and the move
    then waited quiet_period_s as if it were still being written (1 s of a 1.1 s verdict).
    """
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return Observer()
    return InotifyObserver(generate_full_events=True)


class RootWatches:
    """One recursive watch per inbox on a native or polling observer, kept alive over time."""

    def __init__(
        self,
        roots: tuple[Path, ...],
        handler: FileSystemEventHandler,
        *,
        mode: str,
        poll_interval_s: float,
    ) -> None:
        self._roots = roots
        self._handler = handler
        self._poll_s = max(poll_interval_s, 0.1)
        self.kinds = {root: observer_kind(mode, root) for root in roots}
        self._observers: dict[str, BaseObserver] = {}
        # root -> (watch, (st_dev, st_ino) of the folder watched), None while it is missing
        self._watches: dict[Path, tuple[ObservedWatch, tuple[int, int]] | None] = {}

    def start(self) -> None:
        """Schedule every inbox and start the observers."""
        for root in self._roots:
            self._schedule(root)
        for observer in self._observers.values():
            observer.start()

    def _observer(self, kind: str) -> BaseObserver:
        if kind not in self._observers:
            observer: BaseObserver = (
                PollingObserver(timeout=self._poll_s) if kind == "polling" else native_observer()
            )
            observer.name = f"observer-{kind}"
            self._observers[kind] = observer
            if any(o.is_alive() for o in self._observers.values()):
                observer.start()
        return self._observers[kind]

    def _schedule(self, root: Path) -> bool:
        try:
            st = os.stat(root)
            observer = self._observer(self.kinds[root])
            watch = observer.schedule(self._handler, str(root), recursive=True)
        except OSError as exc:
            logger.warning("cannot watch %s yet: %s", root, exc.strerror or exc)
            self._watches[root] = None
            return False
        self._watches[root] = (watch, (st.st_dev, st.st_ino))
        logger.debug("watching %s (%s)", root, self.kinds[root])
        return True

    def _unschedule(self, root: Path) -> None:
        entry = self._watches.get(root)
        self._watches[root] = None
        if entry is None:
            return
        try:
            self._observers[self.kinds[root]].unschedule(entry[0])
        except (KeyError, OSError, RuntimeError):
            logger.debug("unscheduling %s", root, exc_info=True)

    def check(self) -> list[Path]:
        """Re-arm inboxes that were removed and came back; returns those to rescan."""
        back: list[Path] = []
        for root in self._roots:
            entry = self._watches.get(root)
            try:
                st = os.stat(root)
            except OSError:
                if entry is not None:
                    logger.warning("inbox %s disappeared; waiting for it to come back", root)
                    self._unschedule(root)
                continue
            if entry is not None and entry[1] == (st.st_dev, st.st_ino):
                continue
            self._unschedule(root)
            if self._schedule(root):
                logger.warning("inbox %s is back; watching it again", root)
                back.append(root)
        return back

    def stop(self) -> None:
        """Stop and join every observer thread."""
        for observer in self._observers.values():
            observer.stop()
        for observer in self._observers.values():
            if observer.ident is not None:
                observer.join()
