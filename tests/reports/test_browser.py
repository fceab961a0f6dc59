"""Every generated report opened in a real headless Chromium (Debian's `chromium` package).

The page's own check script records, once loaded, how many images failed to decode and how
many script errors happened; `--dump-dom` prints the DOM after that, and the browser's console
log (stderr) must show no uncaught error and no Content-Security-Policy violation.
scripts/ensure-chromium installs the browser; without it the test is skipped, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_data import XSS_ESCAPED, GeneratedSite

from reports.page import Chart, Page, Section, Stamp, write_page

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
BAD_CONSOLE = re.compile(r"Uncaught|Content Security Policy|Refused to|net::ERR_", re.IGNORECASE)
CONSOLE_LINE = re.compile(r":INFO:CONSOLE|console", re.IGNORECASE)


def _chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the browser, or skip with the reason and the way to install it."""
    found = _chromium()
    if found is None:
        pytest.skip("chromium is not installed: run scripts/ensure-chromium (needs apt-get)")
    return found


@pytest.fixture(scope="module")
def rendered(
    chromium: str, generated_site: GeneratedSite, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str]]:
    """Every report of the generated site opened in Chromium: name -> (dumped DOM, log)."""
    assert generated_site.exit_code == 0
    profiles = tmp_path_factory.mktemp("chromium")
    pages = sorted(generated_site.out_dir.glob("*.html"))
    return {p.name: open_in_chromium(chromium, p, profiles / p.stem) for p in pages}


def open_in_chromium(chromium: str, page: Path, profile: Path) -> tuple[str, str]:
    """(dumped DOM, console log) of a page loaded from file://, offline."""
    argv = [
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
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    env = {**os.environ, "HOME": str(profile)}  # no writes into the real home folder
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def _body_attrs(dom: str) -> dict[str, str]:
    match = re.search(r"<body([^>]*)>", dom)
    assert match, "no <body> in the dumped DOM"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


def test_every_report_renders_in_chromium(rendered: dict[str, tuple[str, str]]) -> None:
    assert sorted(rendered) == ["eda.html", "evaluation.html", "index.html", "operations.html"]
    for name, (dom, log) in rendered.items():
        attrs = _body_attrs(dom)
        assert attrs.get("data-ready") == "1", f"{name}: load handler never ran"
        assert attrs.get("data-broken-images") == "0", f"{name}: broken images"
        assert attrs.get("data-js-errors") == "0", f"{name}: script errors"
        if name != "index.html":
            assert int(attrs["data-images"]) >= 3, f"{name}: charts missing"
        assert not console_errors(log), f"{name}: console errors: {console_errors(log)}"


def console_errors(log: str) -> list[str]:
    """Console lines reporting an uncaught error, a CSP violation or a failed load."""
    console = [line for line in log.splitlines() if CONSOLE_LINE.search(line)]
    return [line for line in console if BAD_CONSOLE.search(line)]


def test_inbox_file_name_stays_text_in_the_browser(
    rendered: dict[str, tuple[str, str]],
) -> None:
    dom, _ = rendered["operations.html"]
    # Parsed as text, the name is serialised escaped again; as markup it would be a <script>.
    assert XSS_ESCAPED in dom
    assert "<script>alert(1)</script>" not in dom


def test_the_checks_catch_a_broken_page(chromium: str, tmp_path: Path) -> None:
    """A page with an undecodable chart and an external image must fail both checks."""
    blocks = (
        Chart("broken", "data:image/png;base64,AAAA"),
        Chart("external", "https://example.invalid/chart.png"),
    )
    page = Page("broken", "Broken", Stamp.now(), (Section("s", "S", blocks),))
    path = write_page(page, tmp_path / "out", private=True)
    dom, log = open_in_chromium(chromium, path, tmp_path / "profile")
    assert _body_attrs(dom)["data-broken-images"] == "2"
    assert any("Content Security Policy" in line for line in console_errors(log))
