"""Assertions shared by the report tests: self-contained, escaped, sections present."""

from __future__ import annotations

import re
from collections.abc import Iterable

# The sections of the evaluation page when it has metrics, and of the EDA page with data.
EVAL_SECTIONS = (
    "model",
    "metrics",
    "classification-report",
    "confusion-matrix",
    "curves",
    "calibration",
    "threshold-sweep",
    "per-source",
    "mistakes",
    "training-curves",
    "comparison",
)
EDA_SECTIONS = (
    "overview",
    "class-distribution",
    "samples",
    "sizes-formats",
    "duplicates",
    "features",
    "pca",
)

SRC_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def assert_self_contained(html: str) -> None:
    """No URL to anywhere: images are data: URIs, links stay inside the reports folder."""
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html.lower()
    for target in SRC_ATTR.findall(html):
        assert target.startswith(("data:image/", "#")) or re.fullmatch(r"[\w.-]+\.html", target), (
            f"external or unexpected reference: {target[:80]!r}"
        )
    assert not re.search(r"<script[^>]*\bsrc=", html, re.IGNORECASE)


def assert_sections(html: str, ids: Iterable[str]) -> None:
    """Every section id is present as a <section id=...>."""
    for section_id in ids:
        assert f'<section id="{section_id}">' in html, f"section {section_id} missing"


def section(html: str, section_id: str) -> str:
    """The HTML of one section."""
    start = html.index(f'<section id="{section_id}">')
    return html[start : html.index("</section>", start)]


def charts_in(html: str) -> int:
    """How many PNG charts are embedded."""
    return html.count('src="data:image/png;base64,')
