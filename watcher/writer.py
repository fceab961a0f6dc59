"""The one thread that writes to the database (Home Assistant recorder style).

Every stage hands its results to this thread as small typed tasks on one bounded queue; it
stores them, claims the next files through the database (so several daemons can share one
database), feeds the claimed jobs to the decoders and, once a verdict is committed, moves the
file. Work in flight is bounded by `credit`: the writer only claims what the pipeline has room
for, so a backlog of any size lives in the `files` table, not in memory.
"""

from __future__ import annotations

import itertools
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from storage import queries
from storage.db import Database
from storage.models import (
    FINAL_FILE_STATES,
    Disposition,
    FileRow,
    FileState,
    utcnow,
)
from watcher import memory
from watcher.messages import (
    ORIGIN_INBOX,
    VANISHED,
    ActivateModel,
    Classified,
    Discovered,
    Job,
    Outcome,
    Rejected,
    Screened,
    ScreenNow,
    Stop,
    Verdict,
    WhenIdle,
    WriterTask,
)
from watcher.models_watch import activate
from watcher.sorting import Sorter, SortOptions
from watcher.threads import WAKE_S, Worker
from watcher.verdicts import (
    StoredFile,
    face_records,
    image_evidence,
    outcome_verdict,
    stored_verdicts,
)

logger = logging.getLogger(__name__)

# A file claimed this many times never finished screening: the process probably died on it.
MAX_ATTEMPTS = 5
# Tasks stored per loop turn; consecutive tasks of one kind share a transaction.
DRAIN_MAX = 512
# How often failed or interrupted moves are looked for.
DUE_CHECK_S = 0.5
# Rejections that may only mean the file is still being written to.
INCOMPLETE_CODES = frozenset({"empty", "truncated"})


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How the writer claims, stores and disposes."""

    worker_id: str
    # Most files claimed and not yet stored at any moment (bounds memory).
    credit: int
    claim_timeout_s: float
    # scan: claim only the paths this run discovered, and report each one's verdict.
    scan: bool
    # Sort screened inbox files into output/{real,ai,rejected}.
    move: bool
    output: Path
    inboxes: tuple[Path, ...]
    retry_max_s: float
    # Truncated/empty files written less than this long ago wait this long before being moved.
    incomplete_hold_s: float = 0.0
    # How often to look for work other processes left (pending rows, stale claims).
    poll_s: float = 1.0
    # Write NAME.verdict.json beside each file sorted into output.
    sidecar: bool = False


class DbWriter(Worker):
    """Owns every database write of the pipeline; see the module docstring."""

    def __init__(
        self,
        db: Database,
        options: WriterOptions,
        tasks: queue.Queue[WriterTask],
        jobs: queue.Queue[Job | None],
        on_final: Callable[[Verdict], None] | None = None,
        on_stored: Callable[[Outcome], None] | None = None,
    ) -> None:
        super().__init__("db-writer")
        # Told of every outcome stored (the metrics).
        self._on_stored = on_stored
        self._db = db
        self._opt = options
        self._tasks = tasks
        self._jobs = jobs
        self._on_final = on_final
        # scan never moves a file.
        self._sorter = Sorter(
            db,
            SortOptions(
                move=options.move and not options.scan,
                output=options.output,
                inboxes=options.inboxes,
                retry_max_s=options.retry_max_s,
                sidecar=options.sidecar,
            ),
        )
        self._in_flight: dict[int, Job] = {}
        # Most files ever claimed and unfinished at once (memory stays bounded by credit).
        self.peak_in_flight = 0
        self._maybe_pending = True
        self._to_claim: deque[str] = deque()
        self._watched: dict[int, Discovered] = {}
        self._waiting: dict[int, Discovered] = {}
        # Rejected files stored with a later move time (see _hold_until), not moved right away.
        self._held: set[int] = set()
        self._idle_waiters: list[WhenIdle] = []
        # Files the API waits for (by file id): resolved when their verdict is stored.
        self._awaited: dict[int, list[ScreenNow]] = {}
        self._due_found = True
        self._next_poll = 0.0
        self._next_due = 0.0
        self._next_trim = 0.0

    @property
    def worker_id(self) -> str:
        """The name this writer claims files under."""
        return self._opt.worker_id

    @property
    def in_flight(self) -> int:
        """Files claimed by this writer and not yet stored."""
        return len(self._in_flight)

    def on_stop(self) -> None:
        """Queue a Stop task behind the work already queued, so that work is stored first."""
        while self.is_alive():
            try:
                self._tasks.put(Stop(), timeout=WAKE_S)
                return
            except queue.Full:
                continue

    def loop(self) -> None:
        """Store tasks, claim work and retry moves until a Stop task arrives."""
        stop = False
        while not stop:
            stop = self._handle(self._take_tasks())
            try:
                self._housekeeping()
            except Exception:  # a database hiccup: log, and try again next turn
                logger.exception("writer housekeeping failed")
        self._finish()

    # --- the task loop -------------------------------------------------------------------

    def _take_tasks(self) -> list[WriterTask]:
        wait = min(self._next_poll, self._next_due) - time.monotonic()
        try:
            first = self._tasks.get(timeout=min(max(wait, 0.0), self._opt.poll_s))
        except queue.Empty:
            return []
        items = [first]
        while len(items) < DRAIN_MAX:
            try:
                items.append(self._tasks.get_nowait())
            except queue.Empty:
                break
        return items

    def _handle(self, tasks: list[WriterTask]) -> bool:
        """Store tasks, grouping runs of one kind into one transaction; True on Stop."""
        stop = False
        for kind, run in itertools.groupby(tasks, key=type):
            group: list[Any] = list(run)
            try:
                if kind is Discovered:
                    self._discover(group)
                elif kind is ScreenNow:
                    self._screen_now(group)
                elif kind is Screened:
                    self._store([o for task in group for o in task.outcomes])
                elif kind is ActivateModel:
                    for task in group:
                        self._activate(task)
                elif kind is WhenIdle:
                    self._idle_waiters.extend(group)
                elif kind is Stop:
                    stop = True
            except Exception:  # one bad group must not stop the writer
                logger.exception("could not store %d %s task(s)", len(group), kind.__name__)
        return stop

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_trim:
            self._next_trim = now + memory.TRIM_EVERY_S
            memory.trim()
        if now >= self._next_due or self._idle_waiters:
            self._next_due = now + DUE_CHECK_S
            self._due_found = self._sorter.run_due(self._in_flight)
        if self._opt.scan and self._waiting and now >= self._next_poll:
            self._retry_waiting()
        self._claim(poll=now >= self._next_poll)
        if now >= self._next_poll:
            self._next_poll = now + self._opt.poll_s
        if self._idle_waiters and self._is_idle():
            for waiter in self._idle_waiters:
                waiter.reply.set_result(None)
            self._idle_waiters.clear()

    def _is_idle(self) -> bool:
        return (
            self._tasks.empty()
            and not self._in_flight
            and not self._maybe_pending
            and not self._to_claim
            and not self._waiting
            and not self._due_found
        )

    def _finish(self) -> None:
        """Give back claims of work that was not stored (requeued for the next run)."""
        try:
            released = self._db.retrying(lambda s: queries.release_claims(s, self._opt.worker_id))
            if released:
                logger.info("requeued %d unfinished file(s) for the next run", released)
        except Exception:
            logger.exception("could not release claims; they expire after claim_timeout_s")
        for waiter in self._idle_waiters:
            waiter.reply.set_result(None)
        self._idle_waiters.clear()
        for tasks in self._awaited.values():  # the API answers these "try again later"
            for task in tasks:
                task.reply.set_exception(RuntimeError("the daemon stopped before screening it"))
        self._awaited.clear()

    # --- discovery -------------------------------------------------------------------------

    def _discover(self, items: list[Discovered]) -> None:
        found = self._db.retrying(lambda s: self._discover_rows(s, items))
        for d, (row, created, again) in zip(items, found, strict=True):
            if created:
                logger.info("discovered %s", d.path)
            elif again and row.state not in FINAL_FILE_STATES:
                logger.info("%s is there again after it vanished; screening it", d.path)
            elif again:
                logger.info("%s is back in the inbox; sorting it again", d.path)
            self._after_discover(d, row)

    def _discover_rows(
        self, s: Session, items: list[Discovered]
    ) -> list[tuple[FileRow, bool, bool]]:
        """(row, created, there again) per item.

        A screened file back in the inbox is sorted again; a file that had vanished before it
        was screened and is there again (same path, size and mtime) is screened again.
        """
        arrivals = [queries.FileArrival(d.path, d.size_bytes, d.mtime_ns, d.origin) for d in items]
        found: list[tuple[FileRow, bool, bool]] = []
        back: set[int] = set()
        returned: set[int] = set()
        for d, (row, created) in zip(items, queries.discover_files(s, arrivals), strict=True):
            if created or row.id in back or row.id in returned:
                # The same arrival twice in one batch is back once, as one row at a time would be.
                found.append((row, created, False))
            elif _vanished(row) and _unchanged(row, d):
                returned.add(row.id)
                found.append((row, False, True))
            elif self._is_rearrival(row, d):
                back.add(row.id)
                found.append((row, False, True))
            else:
                found.append((row, False, False))
        queries.record_dispositions(
            s, [queries.DispositionUpdate(file_id, Disposition.PENDING) for file_id in sorted(back)]
        )
        # synchronize_session="fetch" updates the rows above: they read as pending now.
        queries.requeue_rejected(s, returned, VANISHED)
        return found

    def _is_rearrival(self, row: FileRow, d: Discovered) -> bool:
        """A screened file back at its old path with the same size and mtime (e.g. `mv` back)."""
        if self._opt.scan or not self._opt.move or d.origin != ORIGIN_INBOX:
            return False
        if row.state not in FINAL_FILE_STATES or row.disposition in (None, Disposition.PENDING):
            return False
        return _unchanged(row, d)

    def _after_discover(self, d: Discovered, row: FileRow) -> None:
        final = row.state in FINAL_FILE_STATES
        if not self._opt.scan:
            self._maybe_pending = self._maybe_pending or not final
            return
        if final:
            self._report_existing([row])
        elif row.id not in self._watched:
            self._watched[row.id] = d
            self._to_claim.append(d.path)

    def _screen_now(self, tasks: list[ScreenNow]) -> None:
        """API uploads: the verdict at once when the file was screened before, else claimed
        ahead of the queue and answered when stored."""
        found = self._db.retrying(lambda s: self._discover_rows(s, [t.file for t in tasks]))
        final = [row for row, _, _ in found if row.state in FINAL_FILE_STATES]
        with self._db.session() as s:
            stored = stored_verdicts(s, [row.id for row in final])
        for task, (row, _, _) in zip(tasks, found, strict=True):
            if row.id in stored:
                task.reply.set_result(stored[row.id])
                continue
            if row.id not in self._awaited and row.id not in self._in_flight:
                self._to_claim.append(row.path)
            self._awaited.setdefault(row.id, []).append(task)

    # --- claiming --------------------------------------------------------------------------

    def _claim(self, *, poll: bool) -> None:
        room = self._opt.credit - len(self._in_flight)
        if room <= 0:
            return
        if self._to_claim:  # scan's files, or uploads the API waits for: before the queue
            paths = [self._to_claim.popleft() for _ in range(min(room, len(self._to_claim)))]
            rows = self._claim_rows(room, paths)
            for row in rows:
                self._dispatch(row)
            self._park_unclaimed(set(paths))
            room -= len(rows)
        if self._opt.scan or room <= 0 or not (self._maybe_pending or poll):
            return
        rows = self._claim_rows(room, None)
        self._maybe_pending = len(rows) >= room
        for row in rows:
            self._dispatch(row)

    def _claim_rows(self, limit: int, paths: list[str] | None) -> list[FileRow]:
        return self._db.retrying(
            lambda s: queries.claim_files(
                s,
                worker=self._opt.worker_id,
                limit=limit,
                stale_after_s=self._opt.claim_timeout_s,
                paths=paths,
            )
        )

    def _dispatch(self, row: FileRow) -> None:
        job = Job(row.id, row.path, row.size_bytes, row.mtime_ns, row.origin, row.attempts)
        self._in_flight[job.file_id] = job
        self.peak_in_flight = max(self.peak_in_flight, len(self._in_flight))
        if row.attempts > MAX_ATTEMPTS:
            reason = (
                f"screening was interrupted {row.attempts - 1} times "
                "(did the process crash on this file?)"
            )
            self._store([Rejected(job, "unreadable", reason)])
            return
        self._jobs.put(job)  # never blocks: credit bounds what is queued

    def _park_unclaimed(self, paths: set[str]) -> None:
        """Scan: rows another worker holds are looked at again every poll."""
        for file_id, d in self._watched.items():
            if d.path in paths and file_id not in self._in_flight:
                self._waiting[file_id] = d

    def _retry_waiting(self) -> None:
        waiting = list(self._waiting.values())
        self._waiting.clear()

        found = self._db.retrying(lambda s: self._discover_rows(s, waiting))
        rows = [row for row, _, _ in found]
        self._report_existing([r for r in rows if r.state in FINAL_FILE_STATES])
        self._to_claim.extend(r.path for r in rows if r.state not in FINAL_FILE_STATES)

    # --- storing outcomes ------------------------------------------------------------------

    def _store(self, outcomes: list[Outcome]) -> None:
        """Commit the verdicts (one transaction), then move the files."""
        if not outcomes:
            return
        try:
            rows: list[StoredFile | None] = list(
                self._db.retrying(lambda s: self._store_batch(s, outcomes))
            )
        except Exception:
            logger.exception("storing %d verdicts failed; storing them one by one", len(outcomes))
            rows = [self._store_alone(o) for o in outcomes]
        to_move: list[tuple[StoredFile, str, str | None]] = []
        for outcome, row in zip(outcomes, rows, strict=True):
            self._in_flight.pop(outcome.job.file_id, None)
            if row is None:
                continue  # still claimed in the database: requeued after claim_timeout_s
            _log_outcome(outcome)
            if self._on_stored is not None:
                self._on_stored(outcome)
            if row.disposition == Disposition.PENDING and row.id not in self._held:
                label = outcome.label if isinstance(outcome, Classified) else None
                to_move.append((row, row.state, label))
            self._held.discard(row.id)
            self._report(outcome, row)
        if to_move:
            self._sorter.dispose(to_move)

    def _store_batch(self, s: Session, outcomes: list[Outcome]) -> list[StoredFile | None]:
        """Store outcomes in order: model verdicts set-based, rejections (rare) row by row.

        Only files this writer still holds the claim on are stored (None for the others:
        another daemon took them over after claim_timeout_s and screens them itself).
        """
        held = queries.held_claims(s, [o.job.file_id for o in outcomes], self._opt.worker_id)
        for outcome in outcomes:
            if outcome.job.file_id not in held:
                logger.warning(
                    "%s: the claim was taken over by another daemon; its verdict is not stored",
                    outcome.job.path,
                )
        kept = [o for o in outcomes if o.job.file_id in held]
        classified = [self._classified_file(o) for o in kept if isinstance(o, Classified)]
        screened_at = queries.store_classified(s, classified)
        items = iter(classified)
        stored: list[StoredFile | None] = []
        for outcome in outcomes:
            if outcome.job.file_id not in held:
                stored.append(None)
            elif isinstance(outcome, Classified):
                stored.append(_stored(outcome.job, next(items), screened_at))
            else:
                stored.append(StoredFile.of(self._store_rejected(s, outcome)))
        return stored

    def _classified_file(self, outcome: Classified) -> queries.ClassifiedFile:
        job = outcome.job
        return queries.ClassifiedFile(
            file_id=job.file_id,
            sha256=outcome.sha256,
            size_bytes=job.size_bytes,
            width=outcome.width,
            height=outcome.height,
            format=outcome.format,
            model_version_id=outcome.model_version_id,
            score=outcome.score,
            label=outcome.model_label or outcome.label,
            decode_ms=outcome.decode_ms,
            infer_ms=outcome.infer_ms,
            disposition=self._initial_disposition(outcome),
            verdict=outcome.label,
            decided_by=outcome.decided_by,
            evidence=image_evidence(outcome.findings),
            whole_score=outcome.whole_score,
            faces=face_records(outcome.faces),
        )

    def _store_rejected(self, s: Session, outcome: Rejected) -> FileRow:
        disposition = self._initial_disposition(outcome)
        hold = self._hold_until(outcome) if disposition == Disposition.PENDING else None
        reason = outcome.reason
        if hold is not None:
            # Said where people look (the log, `verdicts`): the file sits in the inbox on purpose.
            reason += (
                f"; held in the inbox until {hold:%H:%M:%S} UTC in case it is still being "
                "written ([watcher] incomplete_hold_s), then set aside"
            )
            logger.info("%s looks incomplete: %s", outcome.job.path, reason)
        row = queries.mark_rejected(
            s,
            outcome.job.file_id,
            code=outcome.code,
            reason=reason,
            sha256=outcome.sha256,
            disposition=disposition,
        )
        if hold is not None:
            self._held.add(row.id)
            row = queries.record_disposition(
                s, row.id, disposition=Disposition.PENDING, next_attempt_at=hold
            )
        return row

    def _hold_until(self, outcome: Rejected) -> datetime | None:
        """When a just-written truncated or empty file may be set aside (None: now).

        A writer that closes the file between chunks (some FTP/SMB clients, `touch` then
        write) makes it look complete too early. Set aside at once, its next append would
        re-create the file in the inbox with only the rest of the data: the image split in
        two broken pieces. Held, it grows in place; move_file then refuses to move the
        changed file, and the grown file arrives as a new row and is screened whole.
        """
        if outcome.code not in INCOMPLETE_CODES:
            return None
        age_s = time.time() - outcome.job.mtime_ns / 1e9
        wait_s = self._opt.incomplete_hold_s - max(age_s, 0.0)
        return utcnow() + timedelta(seconds=wait_s) if wait_s > 0 else None

    def _store_alone(self, outcome: Outcome) -> StoredFile | None:
        """Store one outcome; if even that fails, record the file as rejected with the error."""
        try:
            return self._db.retrying(lambda s: self._store_batch(s, [outcome])[0])
        except Exception as exc:
            logger.exception("could not store the verdict for %s", outcome.job.path)
            fallback = Rejected(outcome.job, "unreadable", f"internal error storing verdict: {exc}")
        try:
            return self._db.retrying(lambda s: self._store_batch(s, [fallback])[0])
        except Exception:
            logger.exception("could not record %s as rejected either", outcome.job.path)
            return None

    def _initial_disposition(self, outcome: Outcome) -> str | None:
        if isinstance(outcome, Rejected) and outcome.code == VANISHED:
            return None  # nothing left to sort
        job = outcome.job
        if self._sorter.move_allowed(job.path):
            return Disposition.PENDING
        return Disposition.KEPT

    def _activate(self, task: ActivateModel) -> None:
        try:
            task.reply.set_result(self._db.retrying(lambda s: activate(s, task)))
        except Exception as exc:
            logger.exception("could not register model %s", task.version)
            task.reply.set_exception(exc)

    # --- reporting (scan) ------------------------------------------------------------------

    def _report(self, outcome: Outcome, row: StoredFile) -> None:
        awaited = self._awaited.pop(row.id, [])
        if awaited:
            verdict = outcome_verdict(outcome, row)
            for task in awaited:
                task.reply.set_result(verdict)
        if self._watched.pop(row.id, None) is not None and self._on_final is not None:
            self._on_final(outcome_verdict(outcome, row))

    def _report_existing(self, rows: list[FileRow]) -> None:
        if not rows:
            return
        with self._db.session() as s:
            found = stored_verdicts(s, [row.id for row in rows])
        for verdict in (found[row.id] for row in rows if row.id in found):
            self._watched.pop(verdict.file_id, None)
            self._waiting.pop(verdict.file_id, None)
            if self._on_final is not None:
                self._on_final(verdict)


def _vanished(row: FileRow) -> bool:
    return row.state == FileState.REJECTED and row.reason_code == VANISHED


def _unchanged(row: FileRow, d: Discovered) -> bool:
    """The file is at the row's path now, with the row's size and mtime."""
    try:
        st = Path(d.path).lstat()
    except OSError:
        return False  # e.g. moved away by this thread since the intake saw it
    return (st.st_size, st.st_mtime_ns) == (row.size_bytes, row.mtime_ns)


def _stored(job: Job, item: queries.ClassifiedFile, screened_at: datetime) -> StoredFile:
    """The row store_classified() wrote (a row's path, size and mtime never change).

    item.disposition is never None here: _initial_disposition gives None to vanished
    rejections only.
    """
    return StoredFile(
        job.file_id, job.path, job.size_bytes, job.mtime_ns, item.sha256, FileState.CLASSIFIED,
        item.disposition, None, screened_at,
    )  # fmt: skip


def _log_outcome(outcome: Outcome) -> None:
    if isinstance(outcome, Classified):
        logger.info(
            "screened %s: %s (score %.3f, model %s%s)",
            outcome.job.path,
            outcome.label,
            outcome.score,
            outcome.model_version,
            ", verdict reused" if outcome.reused else "",
        )
    else:
        logger.info("rejected %s: %s (%s)", outcome.job.path, outcome.reason, outcome.code)
