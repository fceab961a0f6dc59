"""`db copy`: a populated SQLite database copied into an empty PostgreSQL one, every table."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import queries as q
from storage.config import StorageConfig
from storage.copy import CopyError, copy_database, tables
from storage.db import Database
from storage.models import FileRow
from tests.storage.factories import Seed
from watcher.cli import main


@pytest.fixture
def sqlite_cfg(tmp_path: Path) -> StorageConfig:
    """A SQLite database with rows in every table of the schema."""
    cfg = StorageConfig(url=f"sqlite:///{tmp_path / 'history.db'}")
    with Database.open(cfg) as db:
        _populate(db)
    return cfg


def _populate(db: Database) -> None:
    seed = Seed(db)
    old = seed.model("v-old", status="champion")
    model = seed.model("v-new")
    for i in range(7):
        seed.classified(old, label="ai" if i % 2 else "real")
    seed.rejected()
    pending = [seed.pending() for _ in range(5)]
    with db.session() as s:
        q.promote(s, "v-new", {"promote": True, "reasons": ["better"]})
        q.record_activation(s, "v-new", "host-a", 4242)
        claimed = q.claim_files(s, worker="daemon-1", limit=3, stale_after_s=60)
        faces = (q.FaceRecord(0, 1, 2, 30, 40, 0.98, 0.7),)
        evidence = q.ImageEvidence((q.EvidenceItem("c2pa", "declares_ai", "made by X"),), "X")
        q.store_classified(s, [_item(row.id, model, faces, evidence) for row in claimed[:2]])
        q.add_evaluation(s, version="v-new", dataset="faces:test", data_fingerprint="fp",
                         metrics={"accuracy": 0.9, "nested": {"scores": [0.1, 0.9]}})  # fmt: skip
        run = q.start_training_run(s, {"epochs": 3})
        q.finish_training_run(s, run, status="succeeded", candidate_version="v-new")
        sha = s.scalars(select(FileRow.sha256).where(FileRow.sha256.is_not(None))).first()
        assert sha is not None and pending
        q.set_label(s, sha, "ai", "checked")


def _item(file_id: int, model: int, faces: tuple, evidence: q.ImageEvidence) -> q.ClassifiedFile:
    return q.ClassifiedFile(
        file_id=file_id, sha256=f"{file_id:064x}", size_bytes=10, width=64, height=64,
        format="JPEG", model_version_id=model, score=0.8, label="ai", decode_ms=1.0,
        infer_ms=2.0, disposition="pending", verdict="ai", decided_by="provenance",
        evidence=evidence, whole_score=0.6, faces=faces,
    )  # fmt: skip


def _rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in primary-key order."""
    with db.engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in tables()
        }


def test_every_table_is_copied_row_for_row(sqlite_cfg: StorageConfig, pg_empty_url: str) -> None:
    target = StorageConfig(url=pg_empty_url)
    result = copy_database(sqlite_cfg, target, chunk=3)  # chunks smaller than most tables
    with Database.open(sqlite_cfg) as src, Database.open(target) as dst:
        before, after = _rows(src), _rows(dst)
        empty = [name for name, rows in before.items() if not rows]
        assert not empty, f"the test database leaves tables empty: {empty}"
        assert after == before  # the same ids, values, timestamps and JSON
        assert result.counts == {name: (len(r), len(r)) for name, r in before.items()}
        with src.session() as s:
            verdicts = [v.to_dict() for v in q.list_verdicts(s)]
        with dst.session() as s:
            assert [v.to_dict() for v in q.list_verdicts(s)] == verdicts  # the view reads alike
            champion = q.champion(s)
            assert champion is not None and champion.version == "v-new"
        with dst.session() as s:  # sequences moved past the copied ids: new rows insert fine
            row, created = q.discover_file(
                s, path="/new.jpg", size_bytes=1, mtime_ns=1, origin="inbox"
            )
            assert created and row.id == len(before["files"]) + 1
            run = q.start_training_run(s, {})
            assert run == len(before["training_runs"]) + 1


def test_a_target_with_rows_is_refused_and_left_alone(
    sqlite_cfg: StorageConfig, pg_url: str
) -> None:
    target = StorageConfig(url=pg_url)
    with Database.open(target) as dst:
        Seed(dst).pending()
    with pytest.raises(CopyError, match=r"not empty.*files"):
        copy_database(sqlite_cfg, target)
    with Database.open(target) as dst, dst.session() as s:
        assert s.scalar(select(func.count()).select_from(FileRow)) == 1


def test_the_command_prints_the_counts(
    sqlite_cfg: StorageConfig, pg_empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nurl = "{sqlite_cfg.url}"\n', encoding="utf-8")
    assert main(["--config", str(config), "db", "copy", "--to", pg_empty_url]) == 0
    out = capsys.readouterr().out
    assert "files" in out and "model_versions" in out and "every table's count matches" in out
    assert main(["--config", str(config), "db", "copy", "--to", pg_empty_url]) == 1
    assert "not empty" in capsys.readouterr().err
