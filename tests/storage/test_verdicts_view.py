"""The `verdicts` view: list_verdicts filters, VerdictRow.to_dict, plain sqlite3 access."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from storage import queries as q
from storage.db import Database
from storage.models import FileRow, utcnow
from tests.storage.factories import Seed


def _verdicts(db: Database, **filters: object) -> list[q.VerdictRow]:
    with db.session() as s:
        return q.list_verdicts(s, **filters)  # type: ignore[arg-type]


def test_only_final_files_newest_first(db: Database, seed: Seed) -> None:
    model = seed.model("v7")
    ai, sha = seed.classified(model, score=0.93, label="ai")
    seed.pending()  # not screened yet: not a verdict
    rejected = seed.rejected("truncated")
    rows = _verdicts(db)
    assert [r.id for r in rows] == [rejected, ai]
    bad, good = rows
    assert (good.status, good.label, good.score, good.model_version, good.sha256) == (
        "classified",
        "ai",
        0.93,
        "v7",
        sha,
    )
    assert (good.decode_ms, good.infer_ms, good.reason) == (1.5, 2.5, None)
    assert (bad.status, bad.label, bad.score, bad.model_version) == ("rejected", None, None, None)
    assert (bad.reason_code, bad.reason) == ("truncated", "the file is truncated")
    assert good.created_at is not None and good.created_at.tzinfo is not None


def test_filters(db: Database, seed: Seed) -> None:
    model = seed.model()
    ai, _ = seed.classified(model, label="ai")
    real, _ = seed.classified(model, score=0.1, label="real")
    rejected = seed.rejected()
    with db.session() as s:
        old = s.get(FileRow, ai)
        assert old is not None
        old.screened_at = utcnow() - timedelta(days=3)
    assert [r.id for r in _verdicts(db, label="ai")] == [ai]
    assert [r.id for r in _verdicts(db, label="real")] == [real]
    assert [r.id for r in _verdicts(db, status="rejected")] == [rejected]
    assert [r.id for r in _verdicts(db, status="classified")] == [real, ai]
    assert [r.id for r in _verdicts(db, since=utcnow() - timedelta(days=1))] == [rejected, real]
    assert [r.id for r in _verdicts(db, limit=1)] == [rejected]
    assert _verdicts(db, label="ai", status="rejected") == []
    with pytest.raises(ValueError):
        _verdicts(db, status="pending")


def test_to_dict_is_json_safe(db: Database, seed: Seed) -> None:
    seed.classified(seed.model())
    (row,) = _verdicts(db)
    data = json.loads(json.dumps(row.to_dict()))
    assert data["created_at"] == row.created_at.isoformat()  # type: ignore[union-attr]
    assert set(data) == set(q.VERDICT_COLUMNS)


def test_plain_sqlite3_can_read_the_view(db: Database, db_path: Path, seed: Seed) -> None:
    model = seed.model("v1")
    seed.classified(model, label="ai", path="/in/face.jpg")
    seed.rejected()
    with sqlite3.connect(db_path) as con:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            "SELECT path, status, label, score, model_version, created_at FROM verdicts "
            "WHERE label = 'ai' ORDER BY created_at DESC"
        ).fetchall()
        per_status = dict(con.execute("SELECT status, count(*) FROM verdicts GROUP BY status"))
    assert [dict(r) | {"created_at": None} for r in rows] == [
        {
            "path": "/in/face.jpg",
            "status": "classified",
            "label": "ai",
            "score": 0.9,
            "model_version": "v1",
            "created_at": None,
        }
    ]
    assert rows[0]["created_at"][:4].isdigit()  # UTC text, e.g. 2025-11-25 10:00:00.123456
    assert per_status == {"classified": 1, "rejected": 1}
