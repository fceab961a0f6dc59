"""`deepfake-detector schedule` (the background jobs and their next runs) and
`deepfake-detector retrain` (one retraining + promotion decision, now)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import TextIO

from storage.db import Database
from watcher import scheduler, terminal
from watcher.scheduler import JobInfo, SchedulerConfigError
from watcher.settings import Settings

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_CONFIG = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `schedule` and `retrain` sub-commands."""
    sched = subparsers.add_parser(
        "schedule",
        help="show the background jobs of `serve` and their next run times",
        description="List the jobs stored in the database job store (what `serve` runs).",
    )
    sched.set_defaults(func=run)
    retrain = subparsers.add_parser(
        "retrain",
        help="train a candidate now; promote it only if it beats the champion",
        description=(
            "Train a candidate on [training] data plus human-labelled images, evaluate it and "
            "the champion on the same held-out test split, promote it only when the gate "
            "passes, and write the evaluation report either way."
        ),
    )
    retrain.add_argument(
        "--threads", type=int, default=0, metavar="N", help="TensorFlow threads (0 = default)"
    )
    retrain.add_argument("--epochs", type=int, default=None, metavar="N", help="override epochs")
    retrain.set_defaults(func=run_retrain)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the persisted jobs and what the configuration asks for."""
    try:
        wanted = {
            scheduler.REPORTS_JOB: scheduler.reports_trigger(settings.scheduler),
            scheduler.RETRAIN_JOB: scheduler.retrain_trigger(settings.scheduler),
        }
    except SchedulerConfigError as exc:
        print(f"deepfake-detector schedule: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    db = Database.open(settings.storage)
    try:
        jobs = scheduler.persisted_jobs(db)
    finally:
        db.close()
    write_jobs(jobs, sys.stdout)
    stored = {j.id for j in jobs}
    if not settings.scheduler.enabled:
        print("note: [scheduler] enabled = false: `serve` runs no background jobs")
    for job_id, trigger in wanted.items():
        if trigger is not None and job_id not in stored:
            print(f"note: {job_id} is configured ({trigger}) and is scheduled when `serve` starts")
        if trigger is None and job_id in stored:
            print(f"note: {job_id} is disabled in the configuration; `serve` will remove it")
    return 0


def write_jobs(jobs: Sequence[JobInfo], out: TextIO) -> None:
    """Aligned table: job, next run (UTC), trigger, description."""
    if not jobs:
        out.write("no scheduled jobs are stored yet\n")
        return
    header = ("JOB", "NEXT RUN (UTC)", "TRIGGER", "WHAT")
    rows = [(j.id, _when(j.next_run_time), j.trigger, j.name) for j in jobs]
    terminal.write_table(out, header, rows)


def _when(value: datetime | None) -> str:
    if value is None:
        return "paused"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM (e.g. the daemon stopping) unwinds like an exception, so the training run is
    # recorded as failed instead of being left "running" forever.
    raise SystemExit(f"terminated by signal {signum}")


def run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    """Run one retraining now and print its outcome."""
    from watcher.retrain import limit_threads, run_retraining  # lazy: imports TensorFlow

    if args.threads > 0:
        limit_threads(args.threads)
    previous = signal.signal(signal.SIGTERM, _terminate)
    db = Database.open(settings.storage)
    try:
        outcome = run_retraining(settings, db, epochs=args.epochs)
    finally:
        db.close()
        signal.signal(signal.SIGTERM, previous)
    print(outcome.summary())
    return 0 if outcome.status == "succeeded" else EXIT_FAILED
