"""The CLI entry point: command lookup and a light start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from watcher.cli import COMMANDS, build_parser, requested_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["scan", "x.jpg"], "scan"),
        (["--config", "c.toml", "-v", "verdicts"], "verdicts"),
        (["-q", "--config", "serve", "serve"], "serve"),
        (["--help"], None),
    ],
)
def test_requested_command(argv: list[str], expected: str | None) -> None:
    assert requested_command(argv) == expected


def test_every_command_is_registered() -> None:
    parser = build_parser()
    for name in COMMANDS:
        assert parser.parse_args([name, *_minimal_args(name)]).func is not None


def _minimal_args(name: str) -> list[str]:
    minimal = {"scan": ["x.jpg"], "label": ["x.jpg", "ai"], "db": ["copy", "--to", "sqlite://"]}
    return minimal.get(name, [])


@pytest.mark.parametrize("command", ["scan", "serve", "verdicts", "models", "label"])
def test_screening_commands_do_not_import_heavy_libraries(command: str) -> None:
    """`scan` of one image must start fast: no TensorFlow, matplotlib or scikit-learn."""
    code = (
        "import sys; from watcher.cli import build_parser; "
        f"build_parser({command!r}); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
