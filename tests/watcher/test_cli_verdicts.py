"""`deepfake-detector verdicts`: filters and the table / csv / json formats."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from storage.models import FileRow, utcnow
from watcher.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """config.toml whose relative SQLite URL resolves into tmp_path."""
    path = tmp_path / "config.toml"
    path.write_text('[storage]\nurl = "sqlite:///var/test.db"\n', encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(StorageConfig(url=f"sqlite:///{tmp_path / 'var' / 'test.db'}"))
    yield database
    database.close()


def _file(s: Session, path: str) -> int:
    # The rejected file was a one-off `scan` of a file outside the inbox.
    origin = "scan" if path.endswith("bad.jpg") else "inbox"
    row, _ = q.discover_file(s, path=path, size_bytes=1, mtime_ns=1, origin=origin)
    return row.id


@pytest.fixture
def seeded(db: Database) -> dict[str, int]:
    """An ai verdict, a real one from three days ago, a rejected file and a pending one."""
    with db.session() as s:
        model = q.register_model_version(
            s,
            version="v1",
            arch="tiny",
            path="/m",
            input_size=32,
            threshold=0.5,
            data_fingerprint="",
            metrics={},
            training={},
        )
        ids = {name: _file(s, f"/inbox/{name}.jpg") for name in ("ai", "real", "bad", "new")}
        for name, score in (("ai", 0.97), ("real", 0.03)):
            image = q.upsert_image(s, name * 16, 1)
            pred = q.add_prediction(
                s,
                image_id=image.id,
                model_version_id=model.id,
                score=score,
                label=name,
                decode_ms=1.0,
                infer_ms=2.0,
            )
            q.mark_classified(s, ids[name], sha256=image.sha256, prediction_id=pred.id)
        q.mark_rejected(s, ids["bad"], code="truncated", reason="the file is truncated")
    with db.session() as s:
        row = s.get(FileRow, ids["real"])
        assert row is not None
        row.screened_at = utcnow() - timedelta(days=3)
        moved = s.get(FileRow, ids["ai"])
        assert moved is not None
        moved.disposition, moved.dest_path = "moved", "/output/ai/ai.jpg"
    return ids


def _run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "verdicts", *args])


def test_table_lists_final_verdicts_aligned(
    config: Path, seeded: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "CREATED_AT",
        "STATUS",
        "LABEL",
        "SCORE",
        "FACES",
        "DECIDED_BY",
        "MODEL_VERSION",
        "ORIGIN",
        "LOCATION",
        "REASON",
        "EVIDENCE",
    ]
    assert len(lines) == 4  # header + 3 final files; the pending one is not a verdict
    assert "/inbox/new.jpg" not in "\n".join(lines)
    # Where each file is now: the sorted one in output, the others where they were found.
    offsets = {line.index("/") for line in lines[1:]}
    assert offsets == {lines[0].index("LOCATION")}
    table = "\n".join(lines)
    assert "/output/ai/ai.jpg" in table and "/inbox/ai.jpg" not in table
    assert "0.9700" in lines[2] and "truncated" in lines[1]


def test_json_lines_with_label_filter(
    config: Path, seeded: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "--label", "ai", "--format", "jsonl") == 0
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    assert data["location"] == data["dest_path"] or data["path"]
    # json is one document that json.load reads, holding the same objects.
    assert _run(config, "--label", "ai", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [data]
    assert data["id"] == seeded["ai"]
    assert (data["label"], data["score"], data["model_version"]) == ("ai", 0.97, "v1")
    assert data["created_at"].endswith("+00:00")


def test_csv_with_status_filter(
    config: Path, seeded: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "--status", "rejected", "--format", "csv") == 0
    reader = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert reader.fieldnames == list(q.VERDICT_COLUMNS)
    (row,) = list(reader)
    assert (row["path"], row["status"], row["label"]) == ("/inbox/bad.jpg", "rejected", "")
    assert row["reason"] == "the file is truncated"


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2000-01-01", {"ai", "real", "bad"}),
        ("DAY_AGO", {"ai", "bad"}),
        ("2999-01-01T00:00", set()),
    ],
)
def test_since_accepts_dates_and_datetimes(
    config: Path,
    seeded: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    since: str,
    expected: set[str],
) -> None:
    if since == "DAY_AGO":
        since = (utcnow() - timedelta(days=1)).replace(tzinfo=None).isoformat()  # naive = UTC
    assert _run(config, "--since", since, "--format", "json") == 0
    got = {item["id"] for item in json.loads(capsys.readouterr().out)}
    assert got == {seeded[name] for name in expected}


def test_origin_is_listed_and_filters(
    config: Path, seeded: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "--format", "json") == 0
    origins = {item["id"]: item["origin"] for item in json.loads(capsys.readouterr().out)}
    assert origins == {seeded["ai"]: "inbox", seeded["real"]: "inbox", seeded["bad"]: "scan"}
    assert _run(config, "--origin", "inbox", "--format", "json") == 0
    assert {item["id"] for item in json.loads(capsys.readouterr().out)} == {
        seeded["ai"],
        seeded["real"],
    }
    assert _run(config) == 0
    assert " scan " in capsys.readouterr().out


def test_limit(config: Path, seeded: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(config, "--limit", "1", "--format", "jsonl") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [["--since", "yesterday"], ["--limit", "-1"], ["--label", "fake"], ["--format", "xml"]],
)
def test_bad_values_are_argparse_errors(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _run(config, *args)
    assert exc.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_empty_database(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(config) == 0
    assert capsys.readouterr().out == "no verdicts match\n"
    assert (tmp_path / "var" / "test.db").is_file()  # relative URL resolved next to config
