"""Inbox intake: watchdog events and rescans in, complete files out (as `Discovered`).

The observer callback only records the path (`EventTracker.note`); the intake thread decides
when a file is complete, following paperless-ngx's consumer: a move into the inbox or a
close-after-write counts at once, a created file last written long ago after a short second look
(`CONFIRM_S`), anything else once size and mtime stayed unchanged for `quiet_period_s`. Files
present at start-up and a periodic rescan catch what events missed (network shares send none).
Discovery streams: a backlog of any size is walked one entry at a time and handed on through a
bounded queue.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)

from watcher.messages import ORIGIN_INBOX, Discovered
from watcher.threads import WAKE_S, Worker

logger = logging.getLogger(__name__)

# Event kinds the tracker records (the last one noted for a path wins).
CHANGED = "changed"  # created or written: complete once quiet
COMPLETE = "complete"  # closed after writing, or moved in: complete now
FOLDER = "folder"  # a folder appeared: walk it
GONE = "gone"  # deleted or moved away

# Filesystems that deliver no (or not all) inotify events: watched by polling in "auto" mode.
NETWORK_FS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
        "gpfs", "beegfs", "ncpfs", "davfs", "sshfs", "fuse", "virtiofs",
    }
)  # fmt: skip
# Keys of files already handed on by a rescan, so a "keep" inbox is not re-sent every rescan.
SEEN_MAX = 100_000
ROOT_CHECK_S = 1.0
# The second look at a created file whose mtime is already older than the quiet period (a file
# moved in from outside, see Intake._handle_note): long enough for a writer that is still
# appending to change the size, short next to the quiet period it replaces.
CONFIRM_S = 0.05

Submit = Callable[[Discovered, threading.Event], bool]


# --- paths -----------------------------------------------------------------------------------


class PathFilter:
    """Ignore patterns (matched per path component, case-insensitively) and excluded trees."""

    def __init__(self, patterns: Iterable[str], excluded: Iterable[Path] = ()) -> None:
        self._patterns = tuple(p.lower() for p in patterns)
        self._excluded = tuple(Path(p) for p in excluded)

    def ignored_name(self, name: str) -> bool:
        """True when a file or folder name matches an ignore pattern."""
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in self._patterns)

    def excluded(self, path: Path) -> bool:
        """True for an excluded file or folder (the output folder, which may sit inside an
        inbox, and the service's own state) and anything below it."""
        return any(path == ex or ex in path.parents for ex in self._excluded)

    def accepts(self, path: Path, root: Path) -> bool:
        """True when `path` (inside `root`) is neither ignored nor excluded."""
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            return False
        if not parts or any(self.ignored_name(part) for part in parts):
            return False
        return not self.excluded(path)


def walk_files(root: Path, path_filter: PathFilter) -> Iterator[Path]:
    """Every non-folder entry below `root`, streamed; symlinked folders are not followed."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError as exc:
            logger.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        subfolders: list[Path] = []
        with entries:
            for entry in entries:
                if path_filter.ignored_name(entry.name):
                    continue
                path = Path(entry.path)
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if path_filter.excluded(path):
                    continue
                if not is_dir:
                    yield path
                else:
                    subfolders.append(path)
        stack.extend(sorted(subfolders, reverse=True))


def _unescape_mount(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_fstype(path: Path, mounts: str | None = None) -> str | None:
    """Filesystem type of the mount holding `path` (from /proc/mounts), if known."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    real = os.path.realpath(path)
    best, fstype = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def is_network_fs(fstype: str | None) -> bool:
    """True for NFS, SMB/CIFS, 9p, FUSE and other filesystems without reliable events."""
    return fstype is not None and (fstype in NETWORK_FS or fstype.startswith("fuse."))


def observer_kind(mode: str, root: Path, mounts: str | None = None) -> str:
    """'native' or 'polling' for one inbox, given `[watcher] observer`."""
    if mode in ("native", "polling"):
        return mode
    return "polling" if is_network_fs(mount_fstype(root, mounts)) else "native"


# --- events ----------------------------------------------------------------------------------


class EventTracker:
    """Paths noted by observer callbacks, waiting for the intake thread (a dict under a lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._notes: dict[str, str] = {}

    def note(self, path: str, kind: str) -> None:
        """Record that something happened to `path`; never blocks for long, never does work."""
        with self._cond:
            self._notes[path] = kind
            self._cond.notify()

    def take(self, timeout: float) -> dict[str, str]:
        """Everything noted so far, waiting up to `timeout` for the first note."""
        with self._cond:
            if not self._notes and timeout > 0:
                self._cond.wait(timeout)
            notes, self._notes = self._notes, {}
        return notes

    def wake(self) -> None:
        """Wake a waiting take()."""
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._notes)


class InboxHandler(FileSystemEventHandler):
    """watchdog handler: records the path and kind of each event, nothing else."""

    def __init__(self, tracker: EventTracker) -> None:
        self._tracker = tracker

    def on_created(self, event: FileSystemEvent) -> None:
        """A new file (wait for it to settle) or folder (walk it)."""
        self._tracker.note(os.fsdecode(event.src_path), FOLDER if event.is_directory else CHANGED)

    def on_modified(self, event: FileSystemEvent) -> None:
        """Written to: restart its quiet period (folder mtime changes are noise)."""
        if not event.is_directory:
            self._tracker.note(os.fsdecode(event.src_path), CHANGED)

    def on_closed(self, event: FileClosedEvent) -> None:
        """Closed after writing: complete now."""
        self._tracker.note(os.fsdecode(event.src_path), COMPLETE)

    def on_moved(self, event: FileSystemMovedEvent) -> None:
        """Renamed: the old name is gone, the new one is complete now.

        A move from outside the inbox has no source, one out of it no destination.
        """
        source, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
        if source:
            self._tracker.note(source, GONE)
        if dest:
            self._tracker.note(dest, FOLDER if event.is_directory else COMPLETE)

    def on_deleted(self, event: FileSystemEvent) -> None:
        """Deleted: forget it."""
        self._tracker.note(os.fsdecode(event.src_path), GONE)


# --- the intake thread -----------------------------------------------------------------------


class Intake(Worker):
    """Turns events and rescans into complete files and submits them to the pipeline."""

    def __init__(
        self,
        roots: tuple[Path, ...],
        path_filter: PathFilter,
        tracker: EventTracker,
        submit: Submit,
        *,
        quiet_period_s: float,
        rescan_interval_s: float,
        check_roots: Callable[[], list[Path]] | None = None,
    ) -> None:
        super().__init__("intake")
        self._roots = roots
        self._filter = path_filter
        self._tracker = tracker
        self._submit = submit
        self._quiet_s = quiet_period_s
        self._rescan_s = max(rescan_interval_s, 0.1) if rescan_interval_s > 0 else 0.0
        self._check_roots = check_roots
        # path -> (size, mtime_ns, monotonic time it counts as complete if these stay the same)
        self._settling: dict[str, tuple[int, int, float]] = {}
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._next_rescan = 0.0
        self._next_root_check = 0.0
        self.initial_scan_done = threading.Event()

    def on_stop(self) -> None:
        """Wake the thread if it waits for events."""
        self._tracker.wake()

    def settled(self) -> bool:
        """Start-up scan finished and nothing is waiting for its quiet period or handling."""
        return self.initial_scan_done.is_set() and not self._settling and not len(self._tracker)

    def loop(self) -> None:
        """Scan what is there, then follow events, quiet periods, rescans and the roots."""
        self._rescan(self._roots)
        self.initial_scan_done.set()
        while self.should_keep_running():
            notes = self._tracker.take(self._wait_s())
            for path, kind in notes.items():
                if not self.should_keep_running():
                    return
                self._guard(self._handle_note, Path(path), kind)
            self._guard(self._check_settling)
            self._guard(self._periodic)

    def _guard(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # one odd path or a flaky share must not stop the intake
            logger.exception("intake step %s failed", getattr(fn, "__name__", fn))

    def _wait_s(self) -> float:
        now = time.monotonic()
        due = [now + WAKE_S * 5]
        if self._check_roots is not None:
            due.append(self._next_root_check)
        if self._rescan_s:
            due.append(self._next_rescan)
        if self._settling:
            due.append(min(t for _, _, t in self._settling.values()))
        return min(max(min(due) - now, 0.0), WAKE_S * 5)

    def _periodic(self) -> None:
        now = time.monotonic()
        if self._check_roots is not None and now >= self._next_root_check:
            self._next_root_check = now + ROOT_CHECK_S
            reappeared = self._check_roots()
            if reappeared:
                self._rescan(tuple(reappeared))
        if self._rescan_s and now >= self._next_rescan:
            self._rescan(self._roots)

    def _root_of(self, path: Path) -> Path | None:
        for root in self._roots:
            if path == root or root in path.parents:
                return root
        return None

    def _handle_note(self, path: Path, kind: str) -> None:
        root = self._root_of(path)
        if root is None or path == root or not self._filter.accepts(path, root):
            return
        if kind == GONE:
            self._settling.pop(str(path), None)
            return
        try:
            st = os.lstat(path)
        except OSError:
            self._settling.pop(str(path), None)
            return
        if stat.S_ISDIR(st.st_mode):
            if kind == FOLDER:
                self._walk(path)
        elif kind == COMPLETE or not stat.S_ISREG(st.st_mode):
            self._settling.pop(str(path), None)
            self._emit(path, st, from_event=True)
        elif str(path) not in self._settling and self._age_s(st) >= self._quiet_s:
            # Why an old mtime may skip the quiet period: inotify reports a file renamed into
            # the inbox from outside as a creation, and a rename keeps the mtime, so such a
            # file is complete and usually old. A file still being written has an mtime of
            # "now" (every write sets it) and keeps the quiet period. Tools that give a copy an
            # old mtime (cp -p, mv across filesystems, tar, rsync -t, curl -R) set it after the
            # last byte; their earlier events saw a fresh mtime. Left: a share whose clock is
            # behind ours by more than the quiet period; the second look after CONFIRM_S holds
            # back such a file while its size moves, not a writer stalled for longer.
            self._settle(path, st, wait_s=min(CONFIRM_S, self._quiet_s))
        else:
            self._settle(path, st)

    def _settle(self, path: Path, st: os.stat_result, wait_s: float | None = None) -> None:
        """Start (or restart) the wait of a file that may still be written (quiet period)."""
        key = str(path)
        previous = self._settling.get(key)
        if previous is None or previous[:2] != (st.st_size, st.st_mtime_ns):
            wait = self._quiet_s if wait_s is None else wait_s
            self._settling[key] = (st.st_size, st.st_mtime_ns, time.monotonic() + wait)

    def _check_settling(self) -> None:
        now = time.monotonic()
        for key, (size, mtime_ns, due) in list(self._settling.items()):
            if now < due:
                continue
            try:
                st = os.lstat(key)
            except OSError:
                del self._settling[key]
                continue
            if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                del self._settling[key]
                self._emit(Path(key), st, from_event=True)
            else:
                self._settling[key] = (st.st_size, st.st_mtime_ns, now + self._quiet_s)

    def _rescan(self, roots: tuple[Path, ...]) -> None:
        self._next_rescan = time.monotonic() + self._rescan_s
        for root in roots:
            logger.debug("scanning %s", root)
            self._walk(root)

    def _walk(self, folder: Path) -> None:
        for path in walk_files(folder, self._filter):
            if not self.should_keep_running():
                return
            try:
                st = os.lstat(path)
            except OSError:
                continue
            self._found(path, st)

    def _found(self, path: Path, st: os.stat_result) -> None:
        """A file found by walking: complete if its mtime is older than the quiet period."""
        if str(path) in self._settling:
            return
        if stat.S_ISREG(st.st_mode) and self._age_s(st) < self._quiet_s:
            self._settle(path, st)
        else:
            self._emit(path, st, from_event=False)

    @staticmethod
    def _age_s(st: os.stat_result) -> float:
        return time.time() - st.st_mtime_ns / 1e9

    def _emit(self, path: Path, st: os.stat_result, *, from_event: bool) -> None:
        key = (str(path), st.st_size, st.st_mtime_ns)
        if not from_event and key in self._seen:
            return  # a rescan finding a file it already handed on
        item = Discovered(str(path), st.st_size, st.st_mtime_ns, ORIGIN_INBOX)
        if not self._submit(item, self.stopped_event):
            return
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
