"""Background jobs of `serve`: regenerating the HTML reports and nightly retraining.

APScheduler 3 `BackgroundScheduler` with its jobs persisted in the project's own database
(`SQLAlchemyJobStore` on the same engine), so a restart keeps each job's next run time and a
run missed while the daemon was down still happens once (coalesce) within the grace period.

Job functions are module-level and stored by textual reference (`watcher.scheduler:...`) with
no arguments: what they need (settings, database) is handed over by `start_scheduler` in this
process, since neither can be pickled into the job store.

Retraining runs in a child process (`deepfake-detector retrain --threads 1`, lowered CPU
priority) waited on from the scheduler's thread pool: TensorFlow's thread pools are fixed per
process at first use, so only a separate process can train with fewer threads than serving
uses, and a training crash or its memory can never take the screening daemon down with it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from storage.db import Database
from watcher.config import SchedulerConfig
from watcher.settings import Settings

logger = logging.getLogger(__name__)

REPORTS_JOB: Final[str] = "reports"
RETRAIN_JOB: Final[str] = "retrain"
JOBSTORE_TABLE: Final[str] = "apscheduler_jobs"
REPORTS_FUNC: Final[str] = "watcher.scheduler:run_reports_job"
RETRAIN_FUNC: Final[str] = "watcher.scheduler:run_retrain_job"
# Threads of the scheduler's pool: one per job, so a long training never delays a report.
POOL_THREADS: Final[int] = 2
# TensorFlow threads of the retraining child: leaves the other core to screening.
RETRAIN_THREADS: Final[int] = 1
RETRAIN_NICE: Final[int] = 10


class SchedulerConfigError(ValueError):
    """A [scheduler] setting that cannot be scheduled; the message names the key."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One scheduled job as `deepfake-detector schedule` shows it."""

    id: str
    name: str
    trigger: str
    next_run_time: datetime | None


@dataclass(frozen=True, slots=True)
class _Context:
    settings: Settings
    db: Database


_context: _Context | None = None
_context_lock = threading.Lock()


def retrain_trigger(cfg: SchedulerConfig) -> CronTrigger | None:
    """The retraining trigger from `retrain_cron` ("" = disabled); invalid -> clear error."""
    expr = cfg.retrain_cron.strip()
    if not expr:
        return None
    try:
        return CronTrigger.from_crontab(expr)
    except ValueError as exc:
        raise SchedulerConfigError(
            f"[scheduler] retrain_cron: invalid cron expression {expr!r} ({exc}); expected five "
            "fields 'minute hour day month weekday', e.g. '0 3 * * *' for 03:00 every night"
        ) from exc


def reports_trigger(cfg: SchedulerConfig) -> IntervalTrigger | None:
    """The report regeneration trigger from `report_interval_min` (0 = disabled)."""
    if cfg.report_interval_min <= 0:
        return None
    return IntervalTrigger(minutes=cfg.report_interval_min)


def _jobstore(db: Database) -> SQLAlchemyJobStore:
    return SQLAlchemyJobStore(engine=db.engine, tablename=JOBSTORE_TABLE)


class DaemonScheduler(BackgroundScheduler):
    """A BackgroundScheduler whose shutdown also stops a running retraining child."""

    def shutdown(self, wait: bool = True) -> None:
        """Terminate a retraining child process first, then stop the scheduler."""
        global _context
        _stop_child()
        super().shutdown(wait=wait)
        with _context_lock:
            _context = None


def build_scheduler(settings: Settings, db: Database) -> DaemonScheduler:
    """A scheduler on the database job store with the project's job defaults (not started)."""
    return DaemonScheduler(
        jobstores={"default": _jobstore(db)},
        executors={"default": ThreadPoolExecutor(POOL_THREADS)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.scheduler.misfire_grace_s,
        },
    )


def start_scheduler(settings: Settings, db: Database) -> BackgroundScheduler:
    """Start the background jobs configured in [scheduler]; the caller shuts it down."""
    triggers = {
        REPORTS_JOB: (REPORTS_FUNC, "regenerate HTML reports", reports_trigger(settings.scheduler)),
        RETRAIN_JOB: (RETRAIN_FUNC, "retrain and promote", retrain_trigger(settings.scheduler)),
    }  # both triggers are validated before anything starts
    global _context
    with _context_lock:
        _context = _Context(settings, db)
    scheduler = build_scheduler(settings, db)
    # Paused: the job store is open (so persisted jobs can be compared and replaced) but no
    # job runs before the configuration has been applied.
    scheduler.start(paused=True)
    try:
        for job_id, (func, name, trigger) in triggers.items():
            _sync_job(scheduler, job_id, func, name, trigger)
    except BaseException:
        scheduler.shutdown(wait=False)
        raise
    scheduler.resume()
    for info in describe(scheduler):
        logger.info("scheduled %s (%s), next run %s", info.id, info.trigger, info.next_run_time)
    return scheduler


def _sync_job(
    scheduler: BackgroundScheduler,
    job_id: str,
    func: str,
    name: str,
    trigger: BaseTrigger | None,
) -> None:
    """Make the persisted job match the configuration, keeping its next run time if unchanged."""
    existing = scheduler.get_job(job_id)
    if trigger is None:
        if existing is not None:
            scheduler.remove_job(job_id)
            logger.info("job %s disabled in the configuration; removed", job_id)
        return
    if existing is not None and existing.func_ref == func and str(existing.trigger) == str(trigger):
        # Same schedule: keep the stored next run time, so a restart does not postpone it
        # and a run missed while the daemon was down still fires (coalesced, within grace).
        return
    scheduler.add_job(func, trigger=trigger, id=job_id, name=name, replace_existing=True)


def describe(scheduler: BackgroundScheduler) -> list[JobInfo]:
    """The scheduler's jobs, soonest first."""
    jobs: list[Job] = scheduler.get_jobs()
    infos = [
        JobInfo(job.id, job.name, str(job.trigger), getattr(job, "next_run_time", None))
        for job in jobs
    ]
    return sorted(infos, key=lambda j: (j.next_run_time is None, j.next_run_time or 0, j.id))


def persisted_jobs(db: Database) -> list[JobInfo]:
    """The jobs stored in the database (read-only; works while `serve` is running)."""
    scheduler = BackgroundScheduler(jobstores={"default": _jobstore(db)})
    # Started paused only to open the job store; nothing is added, changed or run.
    scheduler.start(paused=True)
    try:
        return describe(scheduler)
    finally:
        scheduler.shutdown(wait=False)


# --- job functions (stored by reference; keep their names and arguments stable) -----------


def _require_context(job: str) -> _Context | None:
    with _context_lock:
        ctx = _context
    if ctx is None:
        logger.error("job %s ran outside a daemon started with start_scheduler; skipped", job)
    return ctx


def run_reports_job() -> None:
    """Scheduled: regenerate the HTML reports (recomputing only what changed)."""
    ctx = _require_context(REPORTS_JOB)
    if ctx is None:
        return
    from watcher.reporting import ALL_KINDS, generate_reports

    try:
        result = generate_reports(ctx.settings, ctx.db, ALL_KINDS, reuse=True)
    except Exception:
        logger.exception("scheduled report regeneration failed")
        return
    logger.info("scheduled reports written: %s", ", ".join(p.name for p in result.written))
    for kind, error in result.failed.items():
        logger.error("scheduled %s report failed: %s", kind, error)


def run_retrain_job() -> None:
    """Scheduled: run `deepfake-detector retrain` in a low-priority child process."""
    ctx = _require_context(RETRAIN_JOB)
    if ctx is None:
        return
    rc = run_retrain_child(ctx.settings)
    if rc == 0:
        logger.info("scheduled retraining finished")
    else:
        logger.error("scheduled retraining exited with status %s (see training runs)", rc)


_child: subprocess.Popen[bytes] | None = None
_child_lock = threading.Lock()


def retrain_argv(settings: Settings) -> list[str]:
    """The command line of the retraining child process."""
    argv = [sys.executable, "-m", "watcher"]
    if settings.source is not None:
        argv += ["--config", str(settings.source)]
    return [*argv, "retrain", "--threads", str(RETRAIN_THREADS)]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports this very project, installed or not (a checkout run in place).
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    # Belt and braces next to --threads: BLAS/OpenMP pools size themselves from these.
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(RETRAIN_THREADS)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def run_retrain_child(settings: Settings) -> int:
    """Run one retraining in a child process and wait for it; its exit status."""
    global _child
    argv = retrain_argv(settings)
    logger.info("starting retraining: %s", " ".join(argv))
    proc = subprocess.Popen(argv, cwd=settings.base_dir, env=_child_env(), stdin=subprocess.DEVNULL)
    with _child_lock:
        _child = proc
    try:
        _lower_priority(proc.pid)
        return proc.wait()
    finally:
        with _child_lock:
            _child = None


def _lower_priority(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, RETRAIN_NICE)
    except OSError as exc:  # the child may already have exited
        logger.debug("could not lower the priority of %s: %s", pid, exc)


def _stop_child(timeout_s: float = 30.0) -> None:
    with _child_lock:
        proc = _child
    if proc is None or proc.poll() is not None:
        return
    logger.info("stopping the retraining child %s", proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
