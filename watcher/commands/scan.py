"""`deepfake-detector scan PATH...`: screen files and folders now; one line per file."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from detector.errors import ModelLoadError
from storage.db import Database
from storage.models import FileState
from watcher import terminal
from watcher.messages import Verdict
from watcher.scanning import ScanFailed, ScanTally, expand_targets, run_scan
from watcher.settings import Settings

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_MISSING = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `scan` sub-command."""
    parser = subparsers.add_parser(
        "scan",
        help="screen files and folders now",
        description=(
            "Screen image files and folders (recursively) now and store every verdict. "
            "Files are never moved or changed. Exit status 0 when every file was handled, "
            "rejected ones included."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line (verdicts view fields)"
    )
    parser.set_defaults(func=run)


def format_line(verdict: Verdict) -> str:
    """The human-readable line for one verdict."""
    if verdict.status == FileState.CLASSIFIED:
        score = f"{verdict.score:.3f}" if verdict.score is not None else "-"
        line = f"{verdict.label or '?':<9}  {score:>5}  {verdict.path}"
        if verdict.decided_by == "provenance":
            return f"{line}  (decided by provenance: {verdict.evidence})"
        return f"{line}  ({verdict.evidence})" if verdict.evidence else line
    return f"{'rejected':<9}  {'-':>5}  {verdict.path}  ({verdict.reason})"


class Printer:
    """Writes verdict lines to stdout and, on a terminal, a progress bar to stderr."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self._json = as_json
        self._err = err
        self._stack = contextlib.ExitStack()
        self._bar = self._stack.enter_context(terminal.progress_bar("screening", err=err, out=out))

    def __call__(self, verdict: Verdict | None, tally: ScanTally, total: int | None) -> None:
        """Print one verdict (None: just refresh the progress bar)."""
        if verdict is not None:
            line = json.dumps(verdict.to_json_dict()) if self._json else format_line(verdict)
            self._bar.line(line)
        text = f"screened {tally.total}, {tally.rejected} rejected"
        self._bar.update(completed=tally.total, total=total, text=text)

    def close(self) -> None:
        """Remove the progress bar (idempotent)."""
        self._stack.close()

    def finish(self, tally: ScanTally) -> None:
        """Remove the progress bar and, on a terminal, print the summary."""
        self.close()
        if self._bar.active:
            self._err.write(f"scanned {tally.summary()}\n")
            self._err.flush()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Screen the given paths; 0 when every file was handled, 1 when the run failed."""
    writer_log = logging.getLogger("watcher.writer")
    level = writer_log.level
    if args.verbose < 1:
        # stdout already has one line per file; the per-file log lines would repeat it.
        writer_log.setLevel(logging.WARNING)
    try:
        return _scan(args, settings)
    finally:
        writer_log.setLevel(level)  # a caller running scan in-process keeps its logging


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    targets, missing = expand_targets(args.paths)
    for arg in missing:
        print(f"deepfake-detector scan: no such file or folder: {arg}", file=sys.stderr)
    printer = Printer(args.json, sys.stdout, sys.stderr)
    try:
        with Database.open(settings.storage) as db:
            tally = run_scan(settings, db, targets, printer)
    except ModelLoadError as exc:
        printer.close()
        print(f"deepfake-detector scan: no usable model: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ScanFailed, OSError, SQLAlchemyError) as exc:
        printer.finish(ScanTally())
        print(f"deepfake-detector scan: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        printer.close()  # an interrupt must not leave the bar drawn
    printer.finish(tally)
    return EXIT_MISSING if missing else 0
