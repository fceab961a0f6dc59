"""The page model every report is built from, and its rendering to one self-contained HTML file.

Reports build a `Page` of `Section`s holding typed blocks (tables, charts, galleries, notes); one
generic Jinja2 template renders any page, with autoescaping on, so a file name such as
`<script>alert(1)</script>.jpg` arriving from an inbox is shown as text and never runs.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final

import jinja2
from markupsafe import Markup

from detector import atomic

logger = logging.getLogger(__name__)

Cell = str | int | float | None

# Runs after `load`: records how many images failed to decode, how many tables reach past the
# page's right edge, how far the page scrolls sideways and how many script errors happened, so
# a headless browser's dumped DOM shows whether the page really rendered and fits.
CHECK_SCRIPT: Final[str] = (
    "(function(){var errs=0;"
    "window.addEventListener('error',function(){errs++;},true);"
    "window.addEventListener('load',function(){var im=document.images,bad=0;"
    "for(var i=0;i<im.length;i++){if(!(im[i].complete&&im[i].naturalWidth>0)){bad++;}}"
    "var b=document.body;b.setAttribute('data-images',String(im.length));"
    "b.setAttribute('data-broken-images',String(bad));"
    "var root=document.documentElement,tb=document.querySelectorAll('table'),wide=0;"
    "for(var j=0;j<tb.length;j++){var p=tb[j].parentElement,"
    "sc=/auto|scroll/.test(getComputedStyle(p).overflowX),"
    "r=(sc?p:tb[j]).getBoundingClientRect().right;if(r>root.clientWidth+1){wide++;}}"
    "b.setAttribute('data-wide-tables',String(wide));"
    "b.setAttribute('data-page-overflow',String(Math.max(0,root.scrollWidth-root.clientWidth)));"
    "b.setAttribute('data-js-errors',String(errs));b.setAttribute('data-ready','1');});})();"
)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every page says about itself: when, for which model, on which data."""

    generated_at: datetime
    model_version: str = ""
    data_fingerprint: str = ""

    @classmethod
    def now(cls, model_version: str = "", data_fingerprint: str = "") -> Stamp:
        """A stamp with the current UTC time."""
        return cls(datetime.now(UTC).replace(microsecond=0), model_version, data_fingerprint)


@dataclass(frozen=True, slots=True)
class Note:
    """A sentence of explanation or warning."""

    kind: ClassVar[str] = "note"
    text: str
    level: str = "info"  # info | warn | good


@dataclass(frozen=True, slots=True)
class NoData:
    """Shown instead of a section's content when its data is missing."""

    kind: ClassVar[str] = "nodata"
    reason: str


@dataclass(frozen=True, slots=True)
class Table:
    """A table of already computed cells (floats are shown with 4 significant digits)."""

    kind: ClassVar[str] = "table"
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart embedded as a data: URI (PNG)."""

    kind: ClassVar[str] = "chart"
    title: str
    uri: str
    alt: str = ""


@dataclass(frozen=True, slots=True)
class Thumb:
    """One thumbnail of a gallery: a data: URI and a caption."""

    uri: str
    caption: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Gallery:
    """A grid of thumbnails."""

    kind: ClassVar[str] = "gallery"
    items: tuple[Thumb, ...]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Preformatted:
    """Monospaced text, e.g. a classification report."""

    kind: ClassVar[str] = "pre"
    text: str


@dataclass(frozen=True, slots=True)
class ReviewCard:
    """One screened picture on the review page: thumbnail (faces boxed), facts, correction."""

    uri: str  # data: URI, or "" for the placeholder (file gone or unreadable)
    label: str
    flagged: bool
    facts: tuple[tuple[str, str], ...]  # (name, value) lines: score, time, path, faces ...
    commands: tuple[str, ...]  # shell commands that record a correction
    evidence: str = ""
    missing: str = ""  # why there is no thumbnail


@dataclass(frozen=True, slots=True)
class Review:
    """A grid of review cards."""

    kind: ClassVar[str] = "review"
    cards: tuple[ReviewCard, ...]


Block = Note | NoData | Table | Chart | Gallery | Preformatted | Review


@dataclass(frozen=True, slots=True)
class Section:
    """One titled part of a page; `id` is its HTML anchor."""

    id: str
    title: str
    blocks: tuple[Block, ...] = ()
    intro: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    """A whole report page; `name` is its file stem (evaluation -> evaluation.html)."""

    name: str
    title: str
    stamp: Stamp
    sections: tuple[Section, ...] = field(default_factory=tuple)
    summary: str = ""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A link on index.html."""

    href: str
    title: str
    description: str
    modified: datetime | None


def nodata_section(section_id: str, title: str, reason: str) -> Section:
    """A section that only says why there is nothing to show."""
    return Section(section_id, title, (NoData(reason),))


def fmt_cell(value: Cell) -> str:
    """How a table cell is printed: None as a dash, floats with 4 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:.4g}"
    return str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        # Always on, not only for *.html: every string we render may come from an inbox.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = fmt_cell
    env.filters["isnum"] = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    return env


_ENV: Final[jinja2.Environment] = _environment()


def _csp() -> str:
    """Content-Security-Policy: nothing loads from outside; only our own script may run."""
    digest = base64.b64encode(hashlib.sha256(CHECK_SCRIPT.encode()).digest()).decode()
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def render_page(page: Page, nav: Sequence[tuple[str, str]] = ()) -> str:
    """The page as one self-contained HTML document."""
    template = _ENV.get_template("page.html")
    return template.render(page=page, nav=nav, csp=_csp(), check_script=Markup(CHECK_SCRIPT))


def render_index(stamp: Stamp, entries: Sequence[IndexEntry]) -> str:
    """index.html linking every report in the folder."""
    template = _ENV.get_template("index.html")
    return template.render(
        stamp=stamp, entries=entries, csp=_csp(), check_script=Markup(CHECK_SCRIPT)
    )


def prepare_dir(out_dir: Path, *, private: bool) -> Path:
    """Create the reports folder (0700 when private) and return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if private:
        out_dir.chmod(0o700)
    return out_dir


def write_atomic(path: Path, text: str | bytes, *, private: bool) -> Path:
    """Write a report file atomically (readers never see half a report), private or not."""
    prepare_dir(path.parent, private=private)
    atomic.write_atomic(path, text, mode=0o600 if private else 0o644)
    logger.info("wrote %s", path)
    return path


def write_page(
    page: Page, out_dir: Path, *, private: bool, nav: Sequence[tuple[str, str]] = ()
) -> Path:
    """Render and atomically write `<out_dir>/<page.name>.html`."""
    return write_atomic(out_dir / f"{page.name}.html", render_page(page, nav), private=private)
