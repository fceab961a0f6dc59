"""How a person runs this program from a shell: every command the product prints for someone to
copy (the daemon's banner, the review page's corrections) starts with this, so it runs as
printed in a fresh shell, where `.venv/bin` is usually not on PATH."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

PROGRAM = "deepfake-detector"


def program() -> str:
    """`deepfake-detector` when that name on PATH is this program; else the console script's
    absolute path; else `python -m watcher` with this interpreter's absolute path."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == PROGRAM and script.is_file():
        found = shutil.which(PROGRAM)
        if found is not None and Path(found).resolve() == script.resolve():
            return PROGRAM
        return shlex.quote(str(script.resolve()))
    return f"{shlex.quote(str(Path(sys.executable).absolute()))} -m watcher"


def command(config: Path | None) -> str:
    """The program with the `--config` these settings were read from (when there is one)."""
    if config is None:
        return program()
    return f"{program()} --config {shlex.quote(str(config.resolve()))}"
