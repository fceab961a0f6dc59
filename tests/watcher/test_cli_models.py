"""`deepfake-detector models`: listing, promote and rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database
from tests.storage.factories import Seed
from watcher.cli import main
from watcher.commands.models import describe_bundle


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[storage]\nurl = "sqlite:///var/test.db"\n', encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(StorageConfig(url=f"sqlite:///{tmp_path / 'var' / 'test.db'}"))
    yield database
    database.close()


def _register(db: Database, version: str, status: str = "candidate", **metrics: float) -> None:
    """A registry row with a bundle folder beside the database (promote checks it exists)."""
    bundle = Path(str(db.engine.url.database)).parent / "models" / version
    bundle.mkdir(parents=True)
    (bundle / "model.json").write_text("{}", encoding="utf-8")
    Seed(db).model(version, status, path=str(bundle), **metrics)


def _statuses(db: Database) -> dict[str, str]:
    with db.session() as s:
        return {v.version: v.status for v in q.list_model_versions(s)}


def _models(config: Path, *args: str) -> int:
    return main(["--config", str(config), "models", *args])


def test_empty_registry(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _models(config) == 0
    out = capsys.readouterr().out
    assert out.startswith("bundled model: ")
    assert "in service: the bundled model" in out
    assert "no registered model versions" in out


def test_lists_versions_and_marks_the_champion(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(db, "v1", "champion", accuracy=0.91, roc_auc=0.955)
    _register(db, "v2", accuracy=0.5)
    assert _models(config) == 0
    out = capsys.readouterr().out
    assert "in service: v1 (champion)" in out
    lines = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in out.splitlines()
        if " tiny " in line
    }
    assert lines["v1"].startswith("* v1")
    assert "0.9100" in lines["v1"] and "0.9550" in lines["v1"]
    assert lines["v2"].startswith("  v2") and "0.5000" in lines["v2"]
    assert lines["v2"].rstrip().endswith("-")  # no roc_auc recorded


def test_promote_then_rollback(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(db, "v1", "champion")
    _register(db, "v2")
    assert _models(config, "promote", "v2") == 0
    assert "v2 is now the champion (v1 retired)" in capsys.readouterr().out
    assert _statuses(db) == {"v1": "retired", "v2": "champion"}
    with db.session() as s:
        v2 = q.get_model_version(s, "v2")
        assert v2 is not None and v2.decision is not None
        assert (v2.decision["by"], v2.decision["action"]) == ("manual", "promote")
    assert _models(config, "rollback") == 0
    assert "v1 is the champion again (v2 retired)" in capsys.readouterr().out
    assert _statuses(db) == {"v1": "champion", "v2": "retired"}


def test_promote_unknown_version_fails_clearly(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _models(config, "promote", "v9") == 1
    assert "unknown model version 'v9'" in capsys.readouterr().err


def test_rollback_without_a_retired_champion_fails_clearly(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(db, "v1", "champion")
    assert _models(config, "rollback") == 1
    assert "no retired champion" in capsys.readouterr().err
    assert _statuses(db) == {"v1": "champion"}


def test_describe_bundle(tmp_path: Path) -> None:
    assert describe_bundle(tmp_path / "missing").startswith("bundled model: absent")
    assert describe_bundle(None).startswith("bundled model: absent")
    bundle = pytest.importorskip("detector.bundle")
    folder = tmp_path / "bundle"
    folder.mkdir()
    assert describe_bundle(folder).startswith("bundled model: absent")
    bundle.write_meta(bundle.ModelMeta(version="tiny-1", arch="tiny", input_size=32), folder)
    line = describe_bundle(folder)
    assert line.startswith("bundled model: tiny-1 (arch tiny, input 32 px")
    (folder / "model.json").write_text("{", encoding="utf-8")
    assert describe_bundle(folder).startswith("bundled model: unreadable")
