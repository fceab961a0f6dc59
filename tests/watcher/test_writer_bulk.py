"""The writer's batch path: set-based storing, the one-by-one fallback, moves, re-arrivals.

On SQLite and on PostgreSQL (both_databases).
"""

from __future__ import annotations

import hashlib
import os
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from storage.models import FileRow, Prediction
from watcher.messages import Classified, Discovered, Job, Outcome, Rejected, WriterTask
from watcher.writer import DbWriter, WriterOptions

pytestmark = pytest.mark.both_databases


@dataclass
class Rig:
    """A writer (thread not started) on a real database, inbox and output folder."""

    writer: DbWriter
    db: Database
    jobs: queue.Queue[Job | None]
    inbox: Path
    output: Path
    model_id: int

    def arrive(self, *names: str) -> list[Job]:
        """Write files into the inbox, discover and claim them; the jobs, sorted by path."""
        found = []
        for name in names:
            path = self.inbox / name
            path.write_bytes(f"content of {name}".encode())
            st = path.stat()
            found.append(Discovered(str(path), st.st_size, st.st_mtime_ns, "inbox"))
        self.writer._discover(found)
        self.writer._claim(poll=True)
        jobs = []
        while not self.jobs.empty():
            job = self.jobs.get_nowait()
            assert job is not None
            jobs.append(job)
        return sorted(jobs, key=lambda j: j.path)

    def verdict(self, job: Job, sha: str, label: str = "ai", score: float = 0.9) -> Classified:
        """A model verdict on `job`."""
        return Classified(
            job, sha, score, label, self.model_id, "v1", 8, 8, "JPEG", 1.0, 2.0, False
        )

    def rows(self) -> dict[str, FileRow]:
        """Every files row, by file name."""
        with self.db.session() as s:
            return {Path(r.path).name: r for r in s.scalars(select(FileRow))}


@pytest.fixture
def rig(tmp_path: Path, db_url: str) -> Iterator[Rig]:
    inbox, output = tmp_path / "inbox", tmp_path / "output"
    inbox.mkdir()
    db = Database.open(StorageConfig(url=db_url))
    with db.session() as s:
        model_id = q.register_model_version(
            s, version="v1", arch="tiny", path="/m", input_size=8, threshold=0.5,
            data_fingerprint="", metrics={}, training={},
        ).id  # fmt: skip
    options = WriterOptions(
        worker_id="w", credit=64, claim_timeout_s=60.0, scan=False, move=True,
        output=output, inboxes=(inbox,), retry_max_s=1.0,
    )  # fmt: skip
    jobs: queue.Queue[Job | None] = queue.Queue()
    tasks: queue.Queue[WriterTask] = queue.Queue()
    try:
        yield Rig(DbWriter(db, options, tasks, jobs), db, jobs, inbox, output, model_id)
    finally:
        db.close()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_batch_is_stored_and_moved_with_one_prediction_per_content(rig: Rig) -> None:
    a, b, c, gone = rig.arrive("a.jpg", "b.jpg", "c.jpg", "gone.jpg")
    outcomes: list[Outcome] = [
        rig.verdict(a, _sha("same"), "ai"),
        rig.verdict(b, _sha("same"), "ai", score=0.5),  # same content in another file
        Rejected(c, "truncated", "the file is truncated"),
        Rejected(gone, "vanished", "the file disappeared"),
    ]
    rig.writer._store(outcomes)
    rows = rig.rows()
    assert [rows[n].state for n in ("a.jpg", "b.jpg", "c.jpg", "gone.jpg")] == [
        "classified",
        "classified",
        "rejected",
        "rejected",
    ]
    assert rows["a.jpg"].prediction_id == rows["b.jpg"].prediction_id is not None
    assert [rows[n].disposition for n in ("a.jpg", "b.jpg", "c.jpg")] == ["moved"] * 3
    assert rows["gone.jpg"].disposition is None  # nothing left to sort
    assert sorted(p.name for p in (rig.output / "ai").iterdir()) == ["a.jpg", "b.jpg"]
    assert [p.name for p in (rig.output / "rejected").iterdir()] == ["c.jpg"]
    assert rows["a.jpg"].dest_path == str(rig.output / "ai" / "a.jpg")
    assert rows["c.jpg"].reason == "the file is truncated"
    assert rig.writer.in_flight == 0
    with rig.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 1


def test_a_failing_batch_is_stored_one_by_one(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    bad, good, other = rig.arrive("bad.jpg", "good.jpg", "other.jpg")  # sorted by path
    rig.writer._store(
        [
            rig.verdict(good, _sha("good")),
            rig.verdict(bad, _sha("bad"), label="maybe"),  # refused by the label check
            rig.verdict(other, _sha("other"), label="real"),
        ]
    )
    rows = rig.rows()
    assert (rows["good.jpg"].state, rows["other.jpg"].state) == ("classified", "classified")
    assert rows["bad.jpg"].state == "rejected"
    assert "internal error storing verdict" in (rows["bad.jpg"].reason or "")
    assert rig.writer.in_flight == 0
    assert "storing them one by one" in caplog.text
    assert sorted(p.name for p in rig.output.rglob("*.jpg")) == ["bad.jpg", "good.jpg", "other.jpg"]


def test_a_file_moved_back_into_the_inbox_is_sorted_again(rig: Rig) -> None:
    (job,) = rig.arrive("x.jpg")
    rig.writer._store([rig.verdict(job, _sha("x"))])
    moved = rig.output / "ai" / "x.jpg"
    os.rename(moved, job.path)  # `mv` back: same size and mtime, same files row
    st = Path(job.path).stat()
    back = Discovered(job.path, st.st_size, st.st_mtime_ns, "inbox")
    rig.writer._discover([back, back])
    row = rig.rows()["x.jpg"]
    assert (row.disposition, row.dest_path) == ("pending", None)
    assert rig.writer._sorter.run_due(busy=())
    row = rig.rows()["x.jpg"]
    assert (row.state, row.disposition, row.dest_path) == ("classified", "moved", str(moved))
    assert moved.exists() and not Path(job.path).exists()


def test_a_file_that_vanished_and_is_there_again_is_screened_again(
    rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (job,) = rig.arrive("v.jpg")
    aside = tmp_path / "v.jpg"
    os.rename(job.path, aside)  # gone before its turn: the decoder rejects it as vanished
    rig.writer._store([Rejected(job, "vanished", "the file disappeared")])
    assert (rig.rows()["v.jpg"].state, rig.rows()["v.jpg"].reason_code) == ("rejected", "vanished")
    rig.writer._discover([Discovered(job.path, job.size_bytes, job.mtime_ns, "inbox")])
    assert rig.rows()["v.jpg"].state == "rejected"  # still gone: nothing to do

    os.rename(aside, job.path)  # the same file (path, size, mtime) is back
    again = Discovered(job.path, job.size_bytes, job.mtime_ns, "inbox")
    caplog.set_level("INFO", logger="watcher.writer")
    rig.writer._discover([again, again])
    row = rig.rows()["v.jpg"]
    assert (row.state, row.reason_code, row.reason, row.attempts) == ("pending", None, None, 0)
    assert caplog.text.count("there again after it vanished") == 1
    rig.writer._claim(poll=True)
    claimed = rig.jobs.get_nowait()
    assert claimed is not None and claimed.file_id == job.file_id
    rig.writer._store([rig.verdict(claimed, _sha("v"))])
    row = rig.rows()["v.jpg"]
    assert (row.state, row.disposition) == ("classified", "moved")
    assert (rig.output / "ai" / "v.jpg").exists()


def test_other_rejections_are_not_screened_again(rig: Rig) -> None:
    (job,) = rig.arrive("t.jpg")
    rig.writer._store([Rejected(job, "truncated", "the file is truncated")])
    rejected = rig.output / "rejected" / "t.jpg"
    assert rejected.exists()
    with rig.db.session() as s:
        assert q.requeue_rejected(s, [job.file_id], "vanished") == set()
    assert rig.rows()["t.jpg"].state == "rejected"


def test_a_verdict_for_a_claim_taken_over_is_not_stored(rig: Rig) -> None:
    # Another daemon took the claim (this one held it past claim_timeout_s): its verdict
    # would screen the file twice, so the writer drops it and leaves the file alone.
    kept_job, lost_job = rig.arrive("kept.jpg", "lost.jpg")
    with rig.db.session() as s:
        row = s.get(FileRow, lost_job.file_id)
        assert row is not None
        row.claimed_by = "other-daemon"
    rig.writer._store([rig.verdict(kept_job, _sha("k")), rig.verdict(lost_job, _sha("l"))])
    rows = rig.rows()
    assert rows["kept.jpg"].state == "classified" and rows["kept.jpg"].disposition == "moved"
    assert rows["lost.jpg"].state == "claimed" and rows["lost.jpg"].claimed_by == "other-daemon"
    assert rows["lost.jpg"].prediction_id is None
    assert (rig.inbox / "lost.jpg").exists() and not (rig.inbox / "kept.jpg").exists()
