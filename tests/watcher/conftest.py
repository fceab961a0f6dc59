"""Watcher test helpers: a temp deployment (config, inbox, output, database), polling, threads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import FileRow, Prediction
from storage.queries import VerdictRow, list_verdicts
from watcher.daemon import Daemon
from watcher.models_watch import open_initial_model
from watcher.settings import Settings, load_settings


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REPO = Path(__file__).resolve().parents[2]


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (as watchdog's own test-suite does)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@dataclass
class Deployment:
    """A temp deployment: config.toml, inbox, output and database under one folder."""

    root: Path
    model: Path
    # "" = a SQLite file in root; else the URL of the test's own PostgreSQL database.
    database_url: str = ""

    @property
    def inbox(self) -> Path:
        """The (first) inbox folder."""
        return self.root / "inbox"

    @property
    def output(self) -> Path:
        """Where screened files are sorted."""
        return self.root / "output"

    @property
    def config(self) -> Path:
        """The config file."""
        return self.root / "config.toml"

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the test database."""
        return self.database_url or f"sqlite:///{self.root / 'db.sqlite'}"

    def write_config(
        self,
        *,
        api: dict[str, Any] | None = None,
        detector: dict[str, Any] | None = None,
        **watcher: Any,
    ) -> Settings:
        """Write config.toml with small timings (overridable per key) and load it; the HTTP
        API is off unless `api` gives its table (daemons of other tests would share a port)."""
        values: dict[str, Any] = {
            "inbox": ["inbox"],
            "output": "output",
            "quiet_period_s": 0.3,
            "max_wait_ms": 20,
            "rescan_interval_s": 60.0,
            "poll_interval_s": 0.1,
            "retry_max_s": 0.2,
            "incomplete_hold_s": 0.0,
            "model_poll_s": 0.1,
            "queue_size": 64,
        }
        values.update(watcher)
        lines = ["[watcher]"] + [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines += ["[detector]", f"model = {_toml(str(self.model))}", "batch_size = 16"]
        lines += [f"{k} = {_toml(v)}" for k, v in (detector or {}).items()]
        lines += ["[storage]", f"url = {_toml(self.db_url)}", "[scheduler]", "enabled = false"]
        lines += ["[api]"] + [f"{k} = {_toml(v)}" for k, v in (api or {"enabled": False}).items()]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return load_settings(self.config)

    @contextmanager
    def database(self) -> Iterator[Database]:
        """An open handle on the test database."""
        settings = load_settings(self.config)
        db = Database.open(settings.storage)
        try:
            yield db
        finally:
            db.close()

    def verdicts(self) -> list[VerdictRow]:
        """Every row of the verdicts view."""
        with self.database() as db, db.session() as s:
            return list_verdicts(s)

    def file_rows(self) -> list[FileRow]:
        """Every files row."""
        with self.database() as db, db.session() as s:
            return list(s.scalars(select(FileRow).order_by(FileRow.id)))

    def prediction_count(self) -> int:
        """How many predictions are stored."""
        with self.database() as db, db.session() as s:
            return int(s.scalar(select(func.count()).select_from(Prediction)) or 0)

    def sorted_files(self) -> dict[str, list[str]]:
        """Names in output/real, output/ai and output/rejected."""
        return {
            label: sorted(p.name for p in (self.output / label).glob("*"))
            for label in ("real", "ai", "rejected")
        }


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def deployment(
    tmp_path: Path, tiny_bundle: Path, backend: str, request: pytest.FixtureRequest
) -> Deployment:
    """A fresh deployment folder using the tiny model (on PostgreSQL for such `backend`)."""
    root = tmp_path / "deploy"
    root.mkdir()
    url = str(request.getfixturevalue("pg_url")) if backend == "postgresql" else ""
    dep = Deployment(root=root, model=tiny_bundle, database_url=url)
    dep.write_config()
    return dep


@contextmanager
def running_daemon(settings: Settings, *, once: bool = False) -> Iterator[Daemon]:
    """Run the daemon in a background thread of this process; stop and join it on exit."""
    db = Database.open(settings.storage)
    daemon = Daemon(settings, db, open_initial_model(settings, db), once=once)
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.update(rc=daemon.run()), name="test-daemon")
    runner.start()
    try:
        wait_until(daemon.intake.initial_scan_done.is_set, what="the start-up scan")
        yield daemon
    finally:
        daemon.stop_event.set()
        runner.join(60)
        db.close()
    assert not runner.is_alive(), "daemon did not stop"
    assert result.get("rc") == 0, f"daemon exited with {result.get('rc')}"


def subprocess_env() -> dict[str, str]:
    """Environment for `python -m watcher` children: repo importable, TensorFlow quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def watcher_command(config: Path, *args: str) -> list[str]:
    """argv of the CLI run as a child process."""
    return [sys.executable, "-m", "watcher", "--config", str(config), *args]


@contextmanager
def serve_process(config: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`serve` as a child process (output appended to `log`); killed on exit if still running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            watcher_command(config, "serve", *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            cwd=config.parent,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(60)
