"""Every command the product prints for a person to copy runs as printed, in a clean shell.

A clean shell: PATH of the system only (no `.venv/bin`), another working folder, a fresh HOME.
The daemon's banner, the review page's corrections and the README's command snippets are run
exactly as they are written; the README's training command (an hour of work) is parsed by the
real command line instead of run.
"""

from __future__ import annotations

import html
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BRIGHT, ImageFactory

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "deepfake-detector"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")


def _clean_env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def _shell(command: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run one printed command line with bash, as a person pasting it would."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=_clean_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _deployment(tmp_path: Path) -> Path:
    config = tmp_path / "deploy" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        f"""
[storage]
url = "sqlite:///{tmp_path / "deploy" / "verdicts.db"}"
[watcher]
inbox = ["{tmp_path / "deploy" / "inbox"}"]
output = "{tmp_path / "deploy" / "output"}"
[reports]
dir = "{tmp_path / "deploy" / "reports"}"
[scheduler]
enabled = false
""",
        encoding="utf-8",
    )
    return config


def _banner_commands(stdout: str) -> list[str]:
    """The command lines of the banner ('Results: ...' and '     or: ...')."""
    found = re.findall(r"^\s*(?:Results|or):\s+(.+)$", stdout, flags=re.MULTILINE)
    assert found, stdout
    return found


def test_the_banner_and_the_review_page_commands_run_as_printed(
    tmp_path: Path, image_factory: ImageFactory
) -> None:
    config = _deployment(tmp_path)
    inbox = tmp_path / "deploy" / "inbox"
    image_factory(inbox / "bright.jpg", color=BRIGHT, size=(96, 96), noise=6.0)
    elsewhere, home = tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    home.mkdir()
    # The daemon as `make run` starts it: through the console script's path.
    served = _shell(f"{shlex.quote(str(SCRIPT))} --config {config} serve --once", elsewhere, home)
    assert served.returncode == 0, served.stderr
    for command in _banner_commands(served.stdout):
        ran = _shell(command, elsewhere, home)
        assert ran.returncode == 0, f"{command}\n{ran.stderr}"
        assert "bright.jpg" in ran.stdout, command
    # The review page, written by the same program: its corrections run as printed.
    report = _shell(f"{shlex.quote(str(SCRIPT))} --config {config} report review", elsewhere, home)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "deploy" / "reports" / "review.html").read_text(encoding="utf-8")
    fixes = [html.unescape(c) for c in re.findall(r'<code class="fix">(.*?)</code>', page)]
    assert fixes
    for command in fixes[:2]:
        ran = _shell(command, elsewhere, home)
        assert ran.returncode == 0, f"{command}\n{ran.stderr}"


def _readme_commands() -> list[str]:
    """Command lines of the README's bash blocks that run this product or query its data."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command.startswith((".venv/bin/deepfake-detector", "sqlite3 ")):
                lines.append(command)
    return lines


def test_the_readme_commands_run_as_printed(tmp_path: Path, image_factory: ImageFactory) -> None:
    # A checkout as a newcomer has it after `make run`: .venv, and the default var/ database.
    checkout, home = tmp_path / "checkout", tmp_path / "home"
    checkout.mkdir()
    home.mkdir()
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    picture = image_factory(tmp_path / "face.jpg", color=BRIGHT, size=(96, 96), noise=6.0)
    first = _shell(f".venv/bin/deepfake-detector scan {picture}", checkout, home)
    assert first.returncode == 0, first.stderr
    commands = _readme_commands()
    assert any(c.startswith(".venv/bin/deepfake-detector verdicts") for c in commands)
    assert any(c.startswith("sqlite3 ") for c in commands)
    for command in commands:
        words = shlex.split(command)
        if len(words) > 1 and words[1] in ("train", "loso", "retrain"):
            _parses(words[1:])  # hours of work: the command line is checked, not run
            continue
        if words[0] == "sqlite3" and shutil.which("sqlite3") is None:
            continue  # the README says the sqlite3 shell is needed for these
        ran = _shell(command, checkout, home)
        assert ran.returncode == 0, f"{command}\n{ran.stderr}"


def _parses(argv: list[str]) -> None:
    from watcher.cli import build_parser

    args = build_parser(argv[0]).parse_args(argv)  # exits (SystemExit) on an unknown flag
    assert args.func is not None
