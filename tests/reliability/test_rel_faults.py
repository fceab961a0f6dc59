"""Faults around the daemon: a locked database, a blocked output folder.

SIGKILL mid-batch, a broken model at reload, a crashing retrain and a removed inbox are covered
by tests/watcher (see RELIABILITY.md); they are not duplicated here.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import BRIGHT, DARK, ImageFactory
from tests.reliability.conftest import census
from tests.watcher.conftest import Deployment, running_daemon, wait_until
from watcher.settings import load_settings

LOCK_S = 3.0


@pytest.mark.parametrize("busy_timeout_ms", [10_000, 200])
def test_database_locked_by_another_writer_loses_no_verdict(
    deployment: Deployment,
    image_factory: ImageFactory,
    caplog: pytest.LogCaptureFixture,
    busy_timeout_ms: int,
) -> None:
    """Default: SQLite's busy timeout waits the lock out; 200 ms: the retry-with-backoff path."""
    caplog.set_level(logging.WARNING, logger="storage")
    deployment.write_config(on_verdict="keep")
    text = deployment.config.read_text(encoding="utf-8")
    text = text.replace("[storage]\n", f"[storage]\nbusy_timeout_ms = {busy_timeout_ms}\n")
    deployment.config.write_text(text, encoding="utf-8")
    settings = load_settings(deployment.config)
    assert settings.storage.busy_timeout_ms == busy_timeout_ms
    names = [f"f{i}.jpg" for i in range(6)]
    with running_daemon(settings):
        raw = sqlite3.connect(deployment.root / "db.sqlite", timeout=30, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
            locked_at = time.monotonic()
            for i, name in enumerate(names):
                color = BRIGHT if i % 2 else DARK
                image_factory(deployment.inbox / name, color=color, seed=i, noise=4.0)
            time.sleep(LOCK_S)  # the stimulus: keep holding the lock while files arrive
            # Nothing could have been committed while we held the write lock.
            assert raw.execute("SELECT count(*) FROM files").fetchone() == (0,)
            raw.execute("COMMIT")
            held = time.monotonic() - locked_at
        finally:
            raw.close()
        wait_until(lambda: len(deployment.verdicts()) == len(names), timeout=60, what="verdicts")
    assert held >= LOCK_S
    assert ("database busy" in caplog.text) == (busy_timeout_ms < LOCK_S * 1000), caplog.text
    rows = deployment.file_rows()
    assert sorted(Path(r.path).name for r in rows) == names  # each once
    assert {r.state for r in rows} == {"classified"} and {r.disposition for r in rows} == {"kept"}
    assert deployment.prediction_count() == len(names)
    assert census(deployment) == {"inbox": len(names)}


def test_blocked_rejected_folder_keeps_the_file_and_retries(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    """output/rejected is a plain file: the move fails (even for root); the file stays put."""
    settings = deployment.write_config()
    blocker = deployment.output / "rejected"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file where the folder should be")
    with running_daemon(settings):
        (deployment.inbox / "notes.jpg").write_text("not an image", encoding="utf-8")
        image_factory(deployment.inbox / "ok.jpg", color=DARK)
        wait_until(lambda: "ok.jpg" in deployment.sorted_files()["real"], what="ok.jpg sorted")
        wait_until(lambda: any(v.reason_code for v in deployment.verdicts()), what="rejection")

        def failure_recorded() -> bool:
            # A rejected file keeps its rejection reason (storage.queries.record_disposition);
            # the failed move shows as disposition "pending" with a retry time and attempts.
            row = next(r for r in deployment.file_rows() if r.path.endswith("notes.jpg"))
            return row.disposition == "pending" and row.next_attempt_at is not None

        wait_until(failure_recorded, what="the move failure")
        (notes,) = [v for v in deployment.verdicts() if v.path.endswith("notes.jpg")]
        assert notes.reason_code == "not_an_image" and notes.reason
        assert (deployment.inbox / "notes.jpg").exists()
        assert census(deployment) == {"inbox": 1, "real": 1}
        blocker.unlink()
        wait_until(lambda: deployment.sorted_files()["rejected"] == ["notes.jpg"], what="retry")
    rows = {Path(v.path).name: v for v in deployment.verdicts()}
    assert rows["notes.jpg"].status == "rejected" and rows["notes.jpg"].disposition == "moved"
    assert rows["notes.jpg"].reason_code == "not_an_image"
    assert census(deployment) == {"rejected": 1, "real": 1}
