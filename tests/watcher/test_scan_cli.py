"""`deepfake-detector scan`: one row per file, correct statuses, --json fields, nothing moved."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import pytest

from tests.conftest import ImageFactory
from watcher.cli import main
from watcher.commands.scan import Printer
from watcher.messages import Verdict
from watcher.scanning import ScanTally

from .conftest import Deployment

JSON_FIELDS = [
    "path",
    "sha256",
    "status",
    "label",
    "score",
    "model_version",
    "reason",
    "created_at",
    "whole_score",
    "faces",
    "face_list",
    "decided_by",
    "evidence",
]


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """mtime and content hash of every regular file below `folder`."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path)] = (
                path.stat().st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return found


@pytest.fixture
def mixed_folder(tmp_path: Path, image_factory: ImageFactory) -> dict[str, tuple[str, str | None]]:
    """Good and broken files; name -> (expected status, expected label or rejection code)."""
    root = tmp_path / "mixed"
    image_factory(root / "bright.jpg", color=(230, 230, 230))
    image_factory(root / "sub" / "dark.png", color=(30, 30, 30), fmt="PNG")
    image_factory(root / "sub" / "deeper" / "dark.webp", color=(25, 25, 25), fmt="WEBP")
    (root / "empty.jpg").write_bytes(b"")
    whole = (root / "bright.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "notes.jpg").write_text("not an image at all")
    os.mkfifo(root / "pipe.jpg")
    (root / "escape.jpg").symlink_to("/etc/passwd")
    (root / "folder.jpg").mkdir()  # a folder named like an image is walked, not screened
    (root / ".DS_Store").write_bytes(b"junk")  # ignored
    return {
        "bright.jpg": ("classified", "ai"),
        "dark.png": ("classified", "real"),
        "dark.webp": ("classified", "real"),
        "empty.jpg": ("rejected", "empty"),
        "truncated.jpg": ("rejected", "truncated"),
        "notes.jpg": ("rejected", "not_an_image"),
        "pipe.jpg": ("rejected", "not_a_file"),
        "escape.jpg": ("rejected", "not_a_file"),
    }


def test_scan_folder_reports_each_file_once_and_exits_0(
    deployment: Deployment,
    mixed_folder: dict[str, tuple[str, str | None]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "mixed"
    before = _snapshot(root)
    assert main(["--config", str(deployment.config), "scan", "--json", str(root)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(list(line) == JSON_FIELDS for line in lines)
    by_name = {Path(line["path"]).name: line for line in lines}
    assert len(lines) == len(by_name) == len(mixed_folder)
    rows = {Path(r.path).name: r for r in deployment.verdicts()}
    assert set(rows) == set(mixed_folder)
    for name, (status, detail) in mixed_folder.items():
        line, row = by_name[name], rows[name]
        assert line["status"] == row.status == status, name
        if status == "classified":
            assert line["label"] == row.label == detail, name
            assert 0.0 <= line["score"] <= 1.0 and line["model_version"] and line["sha256"]
            assert line["reason"] is None
        else:
            assert row.reason_code == detail, (name, row.reason)
            assert line["label"] is None and line["score"] is None and line["reason"]
        assert line["created_at"] and row.disposition in (None, "kept")
    # scan never moves or modifies anything
    assert _snapshot(root) == before
    assert (root / "pipe.jpg").exists() and (root / "escape.jpg").is_symlink()


def test_rescan_reuses_stored_verdicts(
    deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = image_factory(tmp_path / "a" / "one.jpg", color=(230, 230, 230))
    twin = tmp_path / "a" / "twin.jpg"
    twin.write_bytes(first.read_bytes())  # same content, another file
    config = str(deployment.config)
    assert main(["--config", config, "scan", "--json", str(tmp_path / "a")]) == 0
    out1 = sorted(capsys.readouterr().out.splitlines())
    assert deployment.prediction_count() == 1  # duplicate content ran through the model once
    assert main(["--config", config, "scan", "--json", str(tmp_path / "a")]) == 0
    out2 = sorted(capsys.readouterr().out.splitlines())
    assert out1 == out2  # the same verdicts, reported again
    assert deployment.prediction_count() == 1
    assert len(deployment.file_rows()) == 2


def test_plain_output_and_missing_path(
    deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = image_factory(tmp_path / "dark.jpg", color=(20, 20, 20))
    code = main(["--config", str(deployment.config), "scan", str(image), str(tmp_path / "nope")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out.split()[0] == "real" and captured.out.strip().endswith(str(image))
    assert "no such file or folder" in captured.err


def test_scan_in_process_leaves_the_callers_log_levels_alone(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    writer_log = logging.getLogger("watcher.writer")
    writer_log.setLevel(logging.INFO)
    try:
        image = image_factory(tmp_path / "dark.jpg", color=(20, 20, 20))
        assert main(["--config", str(deployment.config), "scan", str(image)]) == 0
        assert writer_log.level == logging.INFO
    finally:
        writer_log.setLevel(logging.NOTSET)


def test_unusable_model_fails_the_run(
    deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = image_factory(tmp_path / "dark.jpg")
    deployment.model = tmp_path / "no-such-model"
    deployment.write_config()
    assert main(["--config", str(deployment.config), "scan", str(image)]) == 1
    assert "no usable model" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminal_stderr_only() -> None:
    out, err = io.StringIO(), _Terminal()
    printer = Printer(True, out, err)
    tally = ScanTally()
    verdict = Verdict(1, "/x/a.jpg", "ab", "classified", "ai", 0.9, "v1", None, "2026-01-01")
    tally.add(verdict)
    printer(verdict, tally, None)
    printer(None, tally, 1)
    printer.finish(tally)
    assert [json.loads(line)["path"] for line in out.getvalue().splitlines()] == ["/x/a.jpg"]
    assert "screened 1" in err.getvalue() and "1 ai" in err.getvalue()
    quiet_err = io.StringIO()  # not a terminal: no progress, no summary
    Printer(False, io.StringIO(), quiet_err).finish(tally)
    assert quiet_err.getvalue() == ""


def test_file_scanned_in_place_is_still_sorted_by_serve(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    """`scan` leaves a file where it is; a later `serve` over that inbox sorts it."""
    settings = deployment.write_config()
    path = image_factory(deployment.inbox / "seen.jpg", color=(230, 230, 230))
    assert main(["--config", str(deployment.config), "scan", str(path)]) == 0
    assert main(["--config", str(deployment.config), "serve", "--once"]) == 0
    assert not path.exists()
    assert (settings.watcher.output / "ai" / "seen.jpg").is_file()


def test_scanning_the_services_own_folder_skips_its_state(
    deployment: Deployment, image_factory: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # `scan .` where the service keeps its database, reports and models: a report's chart or
    # the database is not a picture anyone dropped; the picture and any other file are.
    image_factory(deployment.root / "photos" / "a.jpg", color=(230, 230, 230))
    image_factory(deployment.root / "var" / "reports" / "chart.png", color=(9, 9, 9), fmt="PNG")
    image_factory(deployment.root / "var" / "models" / "sample.png", color=(9, 9, 9), fmt="PNG")
    (deployment.root / "notes.txt").write_text("not a picture")
    assert main(["--config", str(deployment.config), "scan", "--json", str(deployment.root)]) == 0
    screened = {
        Path(json.loads(line)["path"]).name for line in capsys.readouterr().out.splitlines()
    }
    assert {"a.jpg", "notes.txt", "config.toml"} <= screened
    assert not screened & {"chart.png", "sample.png"}
    assert not any(name.startswith("db.sqlite") for name in screened)
