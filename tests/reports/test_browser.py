"""Every generated report opened in a real headless Chromium (Debian's `chromium` package).

The page's own check script records, once loaded, how many images failed to decode and how
many script errors happened; `--dump-dom` prints the DOM after that, and the browser's console
log (stderr) must show no uncaught error and no Content-Security-Policy violation.
scripts/ensure-chromium installs the browser; without it the test is skipped, saying why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from report_data import XSS_ESCAPED, GeneratedSite

from reports.page import Chart, Page, Section, Stamp, Table, write_page
from tests.browser import _argv, _run, chromium, console_errors, open_in_chromium

__all__ = ["chromium"]  # the fixture, shared with the other browser tests

# Sections every page must show (ids of <section>); index.html has none.
PAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "evaluation.html": (
        "model",
        "metrics",
        "confusion-matrix",
        "curves",
        "calibration",
        "fairness",
    ),
    "eda.html": ("overview", "class-distribution", "samples", "features", "pca"),
    "operations.html": ("score-drift",),
    "review.html": ("flagged", "real"),
}
# Screenshots of every page are kept here for people to look at (var/ is not versioned).
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def rendered(
    chromium: str, generated_site: GeneratedSite, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str]]:
    """Every report of the generated site opened in Chromium: name -> (dumped DOM, log);
    a screenshot of each is kept in ARTIFACTS."""
    assert generated_site.exit_code == 0
    profiles = tmp_path_factory.mktemp("chromium")
    pages = sorted(generated_site.out_dir.glob("*.html"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for p in pages:
        screenshot(chromium, p, profiles / f"{p.stem}-shot", ARTIFACTS / f"{p.stem}.png")
    return {p.name: open_in_chromium(chromium, p, profiles / p.stem) for p in pages}


def screenshot(chromium: str, page: Path, profile: Path, dest: Path) -> Path:
    """A PNG of the page's first 1280x2400 pixels as Chromium draws it."""
    argv = [
        *_argv(chromium, profile),
        "--hide-scrollbars",
        "--window-size=1280,2400",
        f"--screenshot={dest}",
        page.resolve().as_uri(),
    ]
    _run(argv, profile)
    assert dest.is_file() and dest.stat().st_size > 10_000, f"no screenshot of {page.name}"
    return dest


def _body_attrs(dom: str) -> dict[str, str]:
    match = re.search(r"<body([^>]*)>", dom)
    assert match, "no <body> in the dumped DOM"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


def test_every_report_renders_in_chromium(rendered: dict[str, tuple[str, str]]) -> None:
    assert sorted(rendered) == [
        "eda.html",
        "evaluation.html",
        "index.html",
        "operations.html",
        "review.html",
    ]
    for name, (dom, log) in rendered.items():
        attrs = _body_attrs(dom)
        assert attrs.get("data-ready") == "1", f"{name}: load handler never ran"
        assert attrs.get("data-broken-images") == "0", f"{name}: broken images"
        assert attrs.get("data-js-errors") == "0", f"{name}: script errors"
        # Every table fits or scrolls inside its own box; the page never scrolls sideways.
        assert attrs.get("data-wide-tables") == "0", f"{name}: a table reaches past the page"
        assert attrs.get("data-page-overflow") == "0", f"{name}: the page scrolls sideways"
        if name != "index.html":
            assert int(attrs["data-images"]) >= 3, f"{name}: charts or thumbnails missing"
        for sid in PAGE_SECTIONS.get(name, ()):
            assert f'<section id="{sid}">' in dom, f"{name}: section {sid} missing"
        assert not console_errors(log), f"{name}: console errors: {console_errors(log)}"
    index, _ = rendered["index.html"]
    for name in PAGE_SECTIONS:
        assert f'href="{name}"' in index, f"index.html does not link {name}"
    kept = {p.name for p in ARTIFACTS.glob("*.png")}
    assert {f"{Path(n).stem}.png" for n in rendered} <= kept


def test_plots_of_a_single_value_are_one_sentence_instead(
    rendered: dict[str, tuple[str, str]],
) -> None:
    # Every picture of the test dataset is 48 px wide: no width histogram, a sentence instead.
    dom, _ = rendered["eda.html"]
    assert "Every picture is 48 px wide" in dom
    assert "Width by class" not in dom


def test_review_page_shows_thumbnails_in_the_browser(
    rendered: dict[str, tuple[str, str]],
) -> None:
    dom, _ = rendered["review.html"]
    shots = re.findall(r'<img class="shot" src="data:image/jpeg;base64,', dom)
    assert len(shots) == 3  # the pictures on disk; the others are placeholders
    assert dom.count('class="placeholder"') >= 1
    # The corrections start with the program as this process was started, and its config.
    assert " --config " in dom and " label " in dom


def test_the_fairness_section_shows_every_group_with_its_chart(
    rendered: dict[str, tuple[str, str]],
) -> None:
    dom, _ = rendered["evaluation.html"]
    fair = dom[dom.index('<section id="fairness">') :]
    fair = fair[: fair.index("</section>")]
    assert "<td>lighting</td>" in fair and "<td>studio</td>" in fair
    assert "<td>age</td>" in fair and re.search(r"<td>(0-12|13-19|20-39|40-59|60\+)</td>", fair)
    assert 'src="data:image/png;base64,' in fair  # the rate-and-interval chart


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


def test_the_checks_catch_a_table_wider_than_the_page(chromium: str, tmp_path: Path) -> None:
    """Without its scrolling box, a 40-column table widens the page: both checks see it."""
    columns = tuple(f"column_{i}" for i in range(40))
    table = Table(columns, (tuple(range(10_000_000, 10_000_040)),))
    page = Page("wide", "Wide", Stamp.now(), (Section("s", "S", (table,)),))
    path = write_page(page, tmp_path / "boxed", private=True)
    dom, _ = open_in_chromium(chromium, path, tmp_path / "profile-boxed")
    assert _body_attrs(dom)["data-page-overflow"] == "0"  # scrolls inside its box
    unboxed = tmp_path / "unboxed.html"
    unboxed.write_text(path.read_text().replace('class="table-box"', ""), encoding="utf-8")
    dom, _ = open_in_chromium(chromium, unboxed, tmp_path / "profile-unboxed")
    attrs = _body_attrs(dom)
    assert int(attrs["data-page-overflow"]) > 0 and attrs["data-wide-tables"] == "1"
