"""The background scheduler: jobs persisted in the project's database, listed by `schedule`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import text

from storage.db import Database
from storage.queries import list_training_runs
from watcher import cli
from watcher import scheduler as sched
from watcher.cli import main
from watcher.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def schedule_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """`schedule` on the CLI even before the lead lists it in COMMAND_MODULES (then a no-op)."""
    if "watcher.commands.schedule" not in cli.COMMAND_MODULES:
        modules = (*cli.COMMAND_MODULES, "watcher.commands.schedule")
        monkeypatch.setattr(cli, "COMMAND_MODULES", modules)


def write_config(folder: Path, **scheduler: Any) -> Path:
    """config.toml with a database and reports folder inside `folder`."""
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in scheduler.items()]
    path = folder / "config.toml"
    path.write_text(
        '[storage]\nurl = "sqlite:///var/test.db"\n\n[reports]\ndir = "var/reports"\n\n'
        "[scheduler]\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Reports every 30 minutes, retraining nightly at 03:00."""
    return write_config(
        tmp_path, report_interval_min=30, retrain_cron="0 3 * * *", misfire_grace_s=600
    )


@pytest.fixture
def settings(config: Path) -> Settings:
    """The settings read from `config`."""
    return load_settings(config)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The project database (migrated)."""
    database = Database.open(settings.storage)
    yield database
    database.close()


@pytest.fixture
def started() -> Iterator[list[BaseScheduler]]:
    """Schedulers a test started; all shut down (and their threads joined) afterwards."""
    running: list[BaseScheduler] = []
    yield running
    for scheduler in running:
        if scheduler.running:
            scheduler.shutdown(wait=True)


def start(settings: Settings, db: Database, started: list[BaseScheduler]) -> BaseScheduler:
    scheduler = sched.start_scheduler(settings, db)
    started.append(scheduler)
    return scheduler


def stored_rows(db: Database) -> dict[str, float]:
    """id -> next_run_time (epoch seconds) straight from the job store table."""
    with db.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, next_run_time FROM {sched.JOBSTORE_TABLE}"))
        return {row[0]: row[1] for row in rows}


def test_jobs_are_persisted_in_the_database(
    settings: Settings, db: Database, started: list[BaseScheduler]
) -> None:
    before = datetime.now(UTC)
    scheduler = start(settings, db, started)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"reports", "retrain"}
    reports, retrain = jobs["reports"], jobs["retrain"]
    assert reports.func_ref == "watcher.scheduler:run_reports_job"  # textual: persistable
    assert retrain.func_ref == "watcher.scheduler:run_retrain_job"
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 600)
    assert timedelta(minutes=29) < reports.next_run_time - before <= timedelta(minutes=31)
    assert (retrain.next_run_time.hour, retrain.next_run_time.minute) == (3, 0)
    scheduler.shutdown()
    rows = stored_rows(db)
    assert set(rows) == {"reports", "retrain"}
    assert rows["reports"] == pytest.approx(reports.next_run_time.timestamp())


def test_schedule_command_lists_jobs_and_next_runs(
    config: Path,
    settings: Settings,
    db: Database,
    started: list[BaseScheduler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    scheduler = start(settings, db, started)
    next_report = scheduler.get_job("reports").next_run_time
    scheduler.shutdown()
    capsys.readouterr()
    assert main(["--config", str(config), "schedule"]) == 0
    out = capsys.readouterr().out
    assert "reports" in out and "interval[0:30:00]" in out
    assert "retrain" in out and "hour='3'" in out
    assert next_report.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") in out
    assert stored_rows(db)  # listing changed nothing


def test_schedule_before_serve_says_jobs_start_with_serve(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "schedule"]) == 0
    out = capsys.readouterr().out
    assert "no scheduled jobs are stored yet" in out
    assert "reports is configured (interval[0:30:00])" in out


def test_restart_keeps_the_persisted_next_run_time(
    settings: Settings, db: Database, started: list[BaseScheduler]
) -> None:
    first = start(settings, db, started)
    planned = first.get_job("reports").next_run_time
    first.shutdown()
    second = start(settings, db, started)
    assert second.get_job("reports").next_run_time == planned


def test_changed_and_disabled_jobs_follow_the_configuration(
    tmp_path: Path, settings: Settings, db: Database, started: list[BaseScheduler]
) -> None:
    start(settings, db, started).shutdown()
    changed = load_settings(write_config(tmp_path, report_interval_min=5, retrain_cron=""))
    scheduler = start(changed, db, started)
    assert [job.id for job in scheduler.get_jobs()] == ["reports"]
    assert str(scheduler.get_job("reports").trigger) == "interval[0:05:00]"
    scheduler.shutdown()
    assert set(stored_rows(db)) == {"reports"}
    off = load_settings(write_config(tmp_path, report_interval_min=0, retrain_cron=""))
    start(off, db, started).shutdown()
    assert stored_rows(db) == {}


@pytest.mark.parametrize("cron", ["61 * * * *", "0 3 * *", "every night"])
def test_invalid_cron_is_a_clear_error(
    tmp_path: Path, cron: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, retrain_cron=cron)
    settings = load_settings(config)
    db = Database.open(settings.storage)
    try:
        with pytest.raises(sched.SchedulerConfigError, match=r"\[scheduler\] retrain_cron"):
            sched.start_scheduler(settings, db)
    finally:
        db.close()
    assert main(["--config", str(config), "schedule"]) == 2
    err = capsys.readouterr().err
    assert "retrain_cron" in err and repr(cron).replace("'", "") in err.replace("'", "")


def test_report_job_regenerates_reports(
    settings: Settings, db: Database, started: list[BaseScheduler]
) -> None:
    start(settings, db, started)
    sched.run_reports_job()  # what the scheduler's thread calls, by reference
    out = settings.reports.dir
    assert {p.name for p in out.glob("*.html")} == {
        "evaluation.html",
        "eda.html",
        "operations.html",
        "review.html",
        "index.html",
    }
    assert "No data" in (out / "eda.html").read_text(encoding="utf-8")


def test_jobs_outside_a_started_daemon_do_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="watcher.scheduler"):
        sched.run_reports_job()
        sched.run_retrain_job()
    assert caplog.text.count("outside a daemon") == 2
    assert not settings.reports.dir.exists()


def test_retraining_runs_as_a_limited_child_process(config: Path, settings: Settings) -> None:
    argv = sched.retrain_argv(settings)
    assert argv[:3] == [sys.executable, "-m", "watcher"]
    assert argv[3:] == ["--config", str(config), "retrain", "--threads", "1"]


@pytest.mark.skipif(
    "watcher.commands.schedule" not in cli.COMMAND_MODULES,
    reason="the child runs `deepfake-detector retrain`: needs watcher.commands.schedule listed "
    "in watcher.cli.COMMAND_MODULES",
)
def test_retrain_job_child_records_its_run(tmp_path: Path, db: Database) -> None:
    """The scheduled job's child process really runs `retrain` (here: a run that fails)."""
    config = write_config(tmp_path, retrain_cron="0 3 * * *")
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f'\n[training]\ndata = "{tmp_path / "no-such-data"}"\n')
    settings = load_settings(config)
    assert sched.run_retrain_child(settings) == 1
    with db.session() as s:
        [run] = list_training_runs(s)
        assert run.status == "failed" and "data folder not found" in (run.error or "")
