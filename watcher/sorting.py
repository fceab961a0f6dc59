"""Sorting screened files: moving each into <output>/real, ai, uncertain or rejected after its
verdict is committed, retrying failed moves with backoff, and the verdict files beside them."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from storage import queries
from storage.db import Database
from storage.models import Disposition, utcnow
from watcher import sidecar
from watcher.disposition import MoveFailed, backoff_s, folder_for, move_file
from watcher.verdicts import StoredFile

logger = logging.getLogger(__name__)

# Most due moves retried per look.
DUE_LIMIT: Final[int] = 64


@dataclass(frozen=True, slots=True)
class SortOptions:
    """Where and whether files are sorted."""

    # Sort screened inbox files into output/{real,ai,uncertain,rejected} (never for scan).
    move: bool
    output: Path
    inboxes: tuple[Path, ...]
    retry_max_s: float
    # Write NAME.verdict.json beside each file sorted into output.
    sidecar: bool = False


class Sorter:
    """Moves files whose verdicts are stored (the writer's thread calls it: one writer)."""

    def __init__(self, db: Database, options: SortOptions) -> None:
        self._db = db
        self._opt = options
        self._failures: dict[int, int] = {}

    def move_allowed(self, path: str) -> bool:
        """Only files inside the daemon's inboxes are ever moved (scan never moves).

        The row's origin is not consulted: a file `scan`ned in place and later found in the inbox
        by `serve` must still be sorted (it used to stay in the inbox, marked kept).
        """
        if not self._opt.move:
            return False
        return _is_under(Path(path), self._opt.inboxes)

    def run_due(self, busy: Collection[int]) -> bool:
        """Retry moves that failed or were interrupted (files in `busy` are being screened
        again: left alone); True when there were any."""
        now = utcnow()
        with self._db.session() as s:
            rows = [r for r in queries.due_dispositions(s, now, DUE_LIMIT) if r.id not in busy]
            labels = {i: v.label for i, v in queries.verdicts_of(s, [r.id for r in rows]).items()}
            items = [(StoredFile.of(row), row.state, labels.get(row.id)) for row in rows]
        if items:
            self.dispose(items)
        return bool(items)

    def dispose(self, items: list[tuple[StoredFile, str, str | None]]) -> None:
        """Move each file (verdict already committed), then record where they went at once."""
        records = [self._move_one(row, status, label) for row, status, label in items]
        self._db.retrying(lambda s: queries.record_dispositions(s, records))
        if self._opt.sidecar:
            self._write_sidecars(
                [r for r in records if r.disposition == Disposition.MOVED and r.dest_path]
            )

    def _write_sidecars(self, moved: list[queries.DispositionUpdate]) -> None:
        """NAME.verdict.json beside each file just sorted; a failure is logged, never fatal."""
        if not moved:
            return
        try:
            with self._db.session() as s:
                rows = queries.verdicts_of(s, [r.file_id for r in moved])
                evidence = queries.evidence_for(s, [r.sha256 for r in rows.values() if r.sha256])
        except Exception:  # the files are sorted and recorded; only their verdict files are lost
            logger.exception("reading verdicts for %d verdict files failed", len(moved))
            return
        for record in moved:
            row = rows.get(record.file_id)
            if row is None or record.dest_path is None:
                continue
            content = sidecar.payload(row, evidence.get(row.sha256 or ""))
            try:
                sidecar.write_sidecar(Path(record.dest_path), content)
            except (OSError, ValueError) as exc:
                logger.warning("cannot write the verdict file of %s: %s", record.dest_path, exc)

    def _move_one(
        self, row: StoredFile, status: str, label: str | None
    ) -> queries.DispositionUpdate:
        if not self.move_allowed(row.path):
            return queries.DispositionUpdate(row.id, Disposition.KEPT)
        folder = folder_for(self._opt.output, status, label)
        try:
            dest = move_file(
                Path(row.path),
                folder,
                size_bytes=row.size_bytes,
                mtime_ns=row.mtime_ns,
                sha256=row.sha256,
            )
        except MoveFailed as exc:
            return self._move_failed(row, exc)
        self._failures.pop(row.id, None)
        logger.info("moved %s -> %s", row.path, dest)
        return queries.DispositionUpdate(row.id, Disposition.MOVED, dest_path=str(dest))

    def _move_failed(self, row: StoredFile, exc: MoveFailed) -> queries.DispositionUpdate:
        if not exc.retry:
            logger.warning("not moving %s: %s", row.path, exc.reason)
            self._failures.pop(row.id, None)
            return queries.DispositionUpdate(row.id, Disposition.FAILED, reason=exc.reason)
        failures = self._failures[row.id] = self._failures.get(row.id, 0) + 1
        delay = backoff_s(failures, self._opt.retry_max_s)
        logger.warning(
            "cannot move %s: %s; attempt %d, retrying in %.1f s",
            row.path,
            exc.reason,
            failures,
            delay,
        )
        return queries.DispositionUpdate(
            row.id,
            Disposition.PENDING,
            reason=f"move failed: {exc.reason}",
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )


def _is_under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
