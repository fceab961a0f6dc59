"""Several daemons on one PostgreSQL database and one inbox, one of them killed mid-batch.

Three real `serve` processes share the database and the inbox; a folder of files is moved in
at once; one daemon gets SIGKILL while it holds claims and is not restarted. Every file must
be screened exactly once and sorted once, and the dead daemon's claims must be taken over by
the others once they are claim_timeout_s old. 3,000 files by default (the issue's figure);
DFD_SCALE_OUT_FILES sets another count.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reports.workers import worker_figures
from storage import queries as q
from storage.db import Database
from storage.models import FileRow, utcnow
from tests.conftest import BRIGHT, DARK, ImageFactory

from .conftest import Deployment, serve_process, wait_until

FILES = int(os.environ.get("DFD_SCALE_OUT_FILES", "3000"))
DAEMONS = ("daemon-1", "daemon-2", "daemon-3")
VICTIM = DAEMONS[0]
# Small, so the test need not wait long for the dead daemon's claims to expire; far longer
# than a live daemon holds a claim (up to queue_size files, a second or so) even on a busy
# machine: a live claim taken over would have its file screened twice.
CLAIM_TIMEOUT_S = 8.0
# Verdicts the victim has stored when it is killed: a few batches of 16.
KILL_AFTER = min(64, FILES // 10)


@pytest.fixture
def shared(tmp_path: Path, tiny_bundle: Path, pg_url: str) -> Deployment:
    """One deployment folder (inbox, output) on a fresh PostgreSQL database."""
    root = tmp_path / "deploy"
    root.mkdir()
    return Deployment(root=root, model=tiny_bundle, database_url=pg_url)


def _configs(dep: Deployment) -> dict[str, Path]:
    """One config file per daemon: the same inbox, output and database, its own worker_id."""
    paths = {}
    for worker in DAEMONS:
        dep.write_config(worker_id=worker, claim_timeout_s=CLAIM_TIMEOUT_S, queue_size=64)
        paths[worker] = shutil.copy(dep.config, dep.root / f"{worker}.toml")
    return {worker: Path(path) for worker, path in paths.items()}


def _stage(staging: Path, image_factory: ImageFactory, n: int) -> list[str]:
    names = []
    for i in range(n):
        name = f"f{i:05d}.jpg"
        color = BRIGHT if i % 2 else DARK
        image_factory(staging / f"d{i % 5}" / name, size=(48, 48), color=color, seed=i, noise=8.0)
        names.append(name)
    return names


def _claims(db: Database) -> Counter[tuple[str, str | None]]:
    """Files per (state, claimed_by), in one cheap query (polled while files fly)."""
    stmt = select(FileRow.state, FileRow.claimed_by, func.count()).group_by(
        FileRow.state, FileRow.claimed_by
    )
    with db.session() as s:
        return Counter({(state, worker): n for state, worker, n in s.execute(stmt)})


def _started(dep: Deployment, worker: str) -> bool:
    log = dep.root / f"{worker}.log"
    return log.exists() and "Results: " in log.read_text(errors="replace")


def test_three_daemons_one_killed_screen_every_file_exactly_once(
    shared: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    configs = _configs(shared)
    names = _stage(tmp_path / "staging", image_factory, FILES)
    started = time.monotonic()
    with ExitStack() as stack:
        procs = {
            w: stack.enter_context(serve_process(configs[w], shared.root / f"{w}.log"))
            for w in DAEMONS
        }
        wait_until(lambda: all(_started(shared, w) for w in DAEMONS), timeout=120, what="start")
        os.rename(tmp_path / "staging", shared.inbox / "batch")  # all files arrive at once
        # SIGKILL while the victim holds claims and has already stored a few batches.
        db = stack.enter_context(shared.database())
        wait_until(
            lambda: (
                (c := _claims(db))[("claimed", VICTIM)] > 0
                and c[("classified", VICTIM)] >= KILL_AFTER
            ),
            timeout=120,
            interval=0.005,
            what=f"{VICTIM} screening",
        )
        procs[VICTIM].send_signal(signal.SIGKILL)
        procs[VICTIM].wait(30)
        killed_at = utcnow()
        orphaned = {
            r.id: r.claimed_at
            for r in shared.file_rows()
            if r.state == "claimed" and r.claimed_by == VICTIM
        }
        rows = wait_until(
            lambda: _all_sorted(shared, len(names)), timeout=600, interval=0.5, what="all sorted"
        )
        for worker in DAEMONS[1:]:
            procs[worker].send_signal(signal.SIGTERM)
            assert procs[worker].wait(60) == 0
    elapsed = time.monotonic() - started
    _assert_screened_and_sorted_once(shared, names, rows)
    # The victim's unfinished claims went to the living daemons once claim_timeout_s old.
    assert orphaned, "the dead daemon held no claim for others to take over"
    taken_over = [r for r in rows if r.id in orphaned]
    assert all(r.claimed_by in DAEMONS[1:] for r in taken_over)
    assert all(r.attempts >= 2 for r in taken_over)
    timeout = timedelta(seconds=CLAIM_TIMEOUT_S)
    for r in taken_over:
        before = orphaned[r.id]
        assert before is not None and r.claimed_at is not None
        assert r.claimed_at >= before + timeout
        assert r.screened_at is not None and r.screened_at >= killed_at
    figures = _assert_per_daemon_figures(shared, len(names))
    print(f"{len(names)} files, 3 daemons, one killed: sorted in {elapsed:.1f} s;", figures)


def _all_sorted(dep: Deployment, n: int) -> list[FileRow] | None:
    rows = dep.file_rows()
    done = [r for r in rows if r.state == "classified" and r.disposition == "moved"]
    return rows if len(done) == n and len(rows) == n else None


def _assert_screened_and_sorted_once(
    dep: Deployment, names: list[str], rows: list[FileRow]
) -> None:
    assert sorted(Path(r.path).name for r in rows) == sorted(names)  # one row per file
    assert not [r for r in rows if r.state == "claimed"]  # nothing left claimed
    placed = [name for folder in dep.sorted_files().values() for name in folder]
    assert sorted(placed) == sorted(names)  # each sorted exactly once, no "(1)" copies
    assert not [p for p in dep.inbox.rglob("*") if p.is_file()]
    assert dep.prediction_count() == len(names)  # each screened once


def _assert_per_daemon_figures(dep: Deployment, n: int) -> dict[str, tuple[int, float | None]]:
    with dep.database() as db, db.session() as s:
        screened = q.screenings_by_worker(s, utcnow() - timedelta(days=1))
    figures = {f.worker: f for f in worker_figures(screened)}
    assert set(figures) <= set(DAEMONS) and sum(f.files for f in figures.values()) == n
    for worker in DAEMONS[1:]:
        assert figures[worker].files > 0
        rate = figures[worker].images_per_s
        assert rate is not None and rate > 0
    return {w: (f.files, f.images_per_s and round(f.images_per_s)) for w, f in figures.items()}
