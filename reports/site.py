"""The reports folder as a small static site: known pages, navigation and index.html."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from reports.page import IndexEntry, Page, Stamp, render_index, write_atomic, write_page

logger = logging.getLogger(__name__)

PAGES: Final[dict[str, tuple[str, str]]] = {
    "evaluation": (
        "Model evaluation",
        "The serving model on the held-out test split: metrics, curves, calibration, "
        "per-source results, training curves, confident mistakes, previous model.",
    ),
    "eda": (
        "Training data (EDA)",
        "Class balance, sample images, sizes and formats, duplicates, image statistics with "
        "hypothesis tests, PCA.",
    ),
    "operations": (
        "Service operations",
        "Verdicts over time, latency, rejections, score drift, model versions, training runs, "
        "agreement with human labels.",
    ),
    "review": (
        "Review recent pictures",
        "The most recently screened pictures, flagged ones first, with their faces boxed and "
        "the command that corrects a verdict.",
    ),
}
NAV: Final[tuple[tuple[str, str], ...]] = tuple(
    (f"{name}.html", title) for name, (title, _) in PAGES.items()
)
CANDIDATE_PREFIX: Final[str] = "candidate-"
CANDIDATES_LISTED: Final[int] = 20


def candidate_page_name(version: str) -> str:
    """File stem of a candidate's evaluation page (only safe file-name characters)."""
    return CANDIDATE_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", version)


def write_report(page: Page, out_dir: Path, *, private: bool) -> Path:
    """Write one page with the site navigation."""
    return write_page(page, out_dir, private=private, nav=NAV)


def index_entries(out_dir: Path) -> list[IndexEntry]:
    """The known pages that exist, then candidate pages, newest first."""
    entries = []
    for name, (title, description) in PAGES.items():
        path = out_dir / f"{name}.html"
        if path.is_file():
            entries.append(IndexEntry(path.name, title, description, _mtime(path)))
    candidates = sorted(
        out_dir.glob(f"{CANDIDATE_PREFIX}*.html"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in candidates[:CANDIDATES_LISTED]:
        version = path.stem[len(CANDIDATE_PREFIX) :]
        description = "A retraining candidate against the champion, with the promotion decision."
        entries.append(IndexEntry(path.name, f"Candidate {version}", description, _mtime(path)))
    return entries


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(microsecond=0)


def write_index(out_dir: Path, stamp: Stamp, *, private: bool) -> Path:
    """Regenerate index.html from what the folder holds."""
    html = render_index(stamp, index_entries(out_dir))
    return write_atomic(out_dir / "index.html", html, private=private)
