"""Headless Chromium (Debian's `chromium` package) for the tests that open pages in a browser.

scripts/ensure-chromium installs it; without it the `chromium` fixture skips, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
BAD_CONSOLE = re.compile(r"Uncaught|Content Security Policy|Refused to|net::ERR_", re.IGNORECASE)
CONSOLE_LINE = re.compile(r":INFO:CONSOLE|console", re.IGNORECASE)


def find_chromium() -> str | None:
    """The browser's path, if it is installed."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the browser, or skip with the reason and the way to install it."""
    found = find_chromium()
    if found is None:
        pytest.skip("chromium is not installed: run scripts/ensure-chromium (needs apt-get)")
    return found


def _argv(chromium: str, profile: Path) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]


def _run(argv: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(profile)}  # no writes into the real home folder
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def open_in_chromium(
    chromium: str, page: Path | str, profile: Path, *extra: str
) -> tuple[str, str]:
    """(dumped DOM, console log) of a page: a file (loaded from file://, offline) or a URL."""
    where = page.resolve().as_uri() if isinstance(page, Path) else page
    proc = _run([*_argv(chromium, profile), *extra, "--dump-dom", where], profile)
    return proc.stdout, proc.stderr


def console_errors(log: str) -> list[str]:
    """Console lines reporting an uncaught error, a CSP violation or a failed load."""
    console = [line for line in log.splitlines() if CONSOLE_LINE.search(line)]
    return [line for line in console if BAD_CONSOLE.search(line)]
