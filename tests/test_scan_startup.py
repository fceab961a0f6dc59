"""`scan` of one image starts light: what it imports, and the garbage collector around imports."""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ImageFactory
from watcher import cli

ROOT = Path(__file__).resolve().parents[1]
# Never needed to screen a file: TensorFlow/Keras (LiteRT serves), reports and training stacks,
# Jinja2 (reports). OpenCV is needed: the face detector (YuNet) runs in it.
HEAVY = ("tensorflow", "keras", "matplotlib", "sklearn", "jinja2")
# Imported only to migrate a database (alembic brings Mako, Mako brings Pygments).
ALEMBIC = ("alembic", "mako", "pygments")

_RUN = """
import json, sys
from watcher.cli import main
sys.argv = ["deepfake-detector", "-q", "--config", sys.argv[1], "scan", sys.argv[2]]
rc = main()
print(json.dumps({"rc": rc, "loaded": sorted(m for m in %r if m in sys.modules)}))
"""


def _scan_in_child(config: Path, image: Path, watch: tuple[str, ...]) -> dict[str, object]:
    """Run `scan IMAGE` the way the console script does; which of `watch` it imported."""
    out = subprocess.run(
        [sys.executable, "-c", _RUN % (watch,), str(config), str(image)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_scan_imports_alembic_only_to_migrate_and_nothing_heavy(
    tmp_path: Path, image_factory: ImageFactory
) -> None:
    db_path = tmp_path / "verdicts.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{db_path}"\n[scheduler]\nenabled = false\n', encoding="utf-8"
    )
    image = image_factory("face.jpg")
    watch = (*ALEMBIC, *HEAVY)

    first = _scan_in_child(config, image, watch)  # a new database: migrated by alembic
    assert first["rc"] == 0
    assert isinstance(first["loaded"], list) and "alembic" in first["loaded"]
    assert set(first["loaded"]) <= set(ALEMBIC)
    with sqlite3.connect(db_path) as con:
        assert con.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)

    again = _scan_in_child(config, image, watch)  # at head: alembic is not even imported
    assert again == {"rc": 0, "loaded": []}


def test_collector_is_paused_only_while_the_command_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []
    original = cli.build_parser

    def spy(command: str | None = None) -> argparse.ArgumentParser:
        seen.append(gc.isenabled())
        return original(command)

    assert gc.isenabled()
    monkeypatch.setattr(cli, "build_parser", spy)
    cli._build_parser_quickly("verdicts")
    assert seen == [False]
    assert gc.isenabled()


def test_scan_prints_its_answer_and_no_runtime_chatter(
    tmp_path: Path, image_factory: ImageFactory
) -> None:
    # A one-off command: routine progress (migrated, model loaded, the LiteRT runtime's own
    # "Created ... XNNPACK delegate" line on fd 2) only with -v.
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "v.db"}"\n[scheduler]\nenabled = false\n',
        encoding="utf-8",
    )
    image = image_factory("face.jpg")

    def scan(*flags: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "watcher", *flags, "--config", str(config), "scan"]
        return subprocess.run(
            [*argv, str(image)], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    quiet = scan()
    assert quiet.returncode == 0 and str(image) in quiet.stdout
    assert quiet.stderr == ""
    chatty = scan("-v")
    assert "loaded model" in chatty.stderr and "XNNPACK" in chatty.stderr
