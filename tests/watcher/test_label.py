"""`deepfake-detector label PATH|SHA256 real|ai [--note TEXT]`: human corrections."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from storage import queries as q
from storage.db import Database
from storage.models import HumanLabel, Image
from watcher import cli
from watcher.cli import main
from watcher.settings import load_settings


@pytest.fixture(autouse=True)
def label_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """`label` on the CLI even before the lead lists it in COMMAND_MODULES (then a no-op)."""
    if "watcher.commands.label" not in cli.COMMAND_MODULES:
        modules = (*cli.COMMAND_MODULES, "watcher.commands.label")
        monkeypatch.setattr(cli, "COMMAND_MODULES", modules)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file with the database inside tmp_path."""
    path = tmp_path / "config.toml"
    path.write_text('[storage]\nurl = "sqlite:///var/test.db"\n', encoding="utf-8")
    return path


@pytest.fixture
def db(config: Path) -> Iterator[Database]:
    """The project database (migrated)."""
    database = Database.open(load_settings(config).storage)
    yield database
    database.close()


def make_jpeg(path: Path, shade: int) -> tuple[Path, str]:
    """A small real JPEG and its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (24, 24), (shade, shade, shade)).save(path, "JPEG")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def screen(
    db: Database, path: Path, sha: str, label: str, score: float, dest: Path | None = None
) -> None:
    """Record what the daemon records for one classified file (optionally moved to dest)."""
    with db.session() as s:
        model = q.register_model_version(
            s,
            version="m1",
            arch="tiny",
            path="/m1",
            input_size=32,
            threshold=0.5,
            data_fingerprint="",
            metrics={},
            training={},
        )
        row, _ = q.discover_file(s, path=str(path), size_bytes=1, mtime_ns=1, origin="inbox")
        image = q.upsert_image(s, sha, 1)
        pred = q.add_prediction(
            s,
            image_id=image.id,
            model_version_id=model.id,
            score=score,
            label=label,
            decode_ms=1.0,
            infer_ms=1.0,
        )
        q.mark_classified(s, row.id, sha256=sha, prediction_id=pred.id)
        if dest is not None:
            q.record_disposition(s, row.id, disposition="moved", dest_path=str(dest))


def labels(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.session() as s:
        return {sha: (label, path) for sha, label, path in q.human_labels(s)}


def test_label_by_path_records_the_correction(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = make_jpeg(tmp_path / "inbox" / "a.jpg", 40)
    screen(db, path, sha, "real", 0.1)
    assert main(["--config", str(config), "label", str(path), "ai", "--note", "a GAN face"]) == 0
    out = capsys.readouterr().out
    assert f"labelled {sha[:12]} as ai" in out
    assert "disagrees with the model m1: real (P(ai) 0.100)" in out
    assert labels(db) == {sha: ("ai", str(path))}
    with db.session() as s:
        stmt = select(HumanLabel.note).join(Image).where(Image.sha256 == sha)
        assert s.scalars(stmt).one() == "a GAN face"


def test_label_by_sha256_and_relabel_replaces(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = make_jpeg(tmp_path / "inbox" / "b.jpg", 200)
    screen(db, path, sha, "ai", 0.9)
    assert main(["--config", str(config), "label", sha.upper(), "real"]) == 0
    assert main(["--config", str(config), "label", sha, "ai"]) == 0
    assert "agrees with the model m1: ai" in capsys.readouterr().out
    assert labels(db)[sha][0] == "ai"


def test_label_a_moved_file_by_its_old_path(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    dest, sha = make_jpeg(tmp_path / "output" / "ai" / "c.jpg", 220)
    old = tmp_path / "inbox" / "c.jpg"  # gone: the daemon moved it to dest
    screen(db, old, sha, "ai", 0.95, dest=dest)
    assert main(["--config", str(config), "label", str(old), "real"]) == 0
    assert labels(db) == {sha: ("real", str(dest))}


def test_label_an_image_never_screened(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = make_jpeg(tmp_path / "elsewhere" / "d.jpg", 90)
    assert main(["--config", str(config), "label", str(path), "real"]) == 0
    assert "the model has not classified this image" in capsys.readouterr().out
    assert labels(db)[sha][0] == "real"


@pytest.mark.parametrize("target", ["0" * 64, "/no/such/file.jpg"])
def test_unknown_image_is_an_error(
    target: str, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "label", target, "ai"]) == 1
    assert "deepfake-detector label:" in capsys.readouterr().err
    assert labels(db) == {}


def test_label_must_be_real_or_ai(config: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), "label", "x.jpg", "fake"])
    assert exc.value.code == 2
