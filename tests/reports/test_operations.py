"""Operations report from a real SQLite database filled through the storage queries."""

from __future__ import annotations

from datetime import UTC, datetime

from html_checks import assert_sections, assert_self_contained, charts_in, section
from report_data import XSS_ESCAPED, XSS_NAME, seed_service

from reports.operations import build_operations_page, collect
from reports.page import Stamp, render_page
from storage import queries as q
from storage.db import Database
from storage.models import utcnow

OPS_SECTIONS = (
    "overview",
    "verdicts-over-time",
    "throughput",
    "daemons",
    "rejections",
    "recent",
    "score-drift",
    "models",
    "training-runs",
    "agreement",
)


def _render(db: Database, reference: list[float] | None) -> str:
    with db.session() as s:
        data = collect(s, now=utcnow(), days=30)
    page = build_operations_page(
        data, stamp=Stamp.now("tiny-new", "fp"), reference_scores=reference
    )
    return render_page(page)


def test_operations_report_shows_service_history(empty_db: Database) -> None:
    seed_service(empty_db)
    with empty_db.session() as s:  # a one-off `scan` of a file elsewhere: listed, not counted
        row, _ = q.discover_file(s, path="/tmp/x.jpg", size_bytes=9, mtime_ns=1, origin="scan")
        q.mark_rejected(s, row.id, code="too_large", reason="the file is too large")
    html = _render(empty_db, [0.05, 0.1, 0.2, 0.8, 0.9, 0.95, 0.15, 0.85])
    assert_sections(html, OPS_SECTIONS)
    assert_self_contained(html)
    assert "No data" not in html
    assert charts_in(html) >= 4
    overview = section(html, "overview")
    assert '<td>files screened from the inboxes</td><td class="num">27</td>' in overview
    assert 'not counted above)</td><td class="num">1</td>' in overview
    assert "<td>tiny-new (champion)</td>" in overview  # the model last put in service
    assert "<td>scan</td>" in section(html, "recent")
    rejections = section(html, "rejections")
    assert "truncated" in rejections and "not_an_image" in rejections
    assert "&lt;b&gt;2&lt;/b&gt;" in rejections  # a reason sentence is data, not markup
    assert "<b>" not in rejections
    runs = section(html, "training-runs")
    assert "DatasetError: data folder gone" in runs and "1 of 2 runs failed" in runs
    models = section(html, "models")
    assert "host-a" in models and "retired" in models and "champion" in models
    assert "accuracy 0.99 vs 0.90" in models
    agreement = section(html, "agreement")
    assert "1 of 2 labelled images agree (50.0%)" in agreement
    assert "/inbox/photo_04.jpg" in agreement  # the disagreement is listed
    daemons = section(html, "daemons")
    assert "host-a:serve" in daemons and "host-b:serve" in daemons
    drift = section(html, "score-drift")
    assert "PSI" in drift and "KS statistic" in drift
    latency = section(html, "throughput")
    assert "drop-to-verdict latency (s)" in latency


def test_inbox_names_escaped_and_drift_without_reference_says_why(empty_db: Database) -> None:
    seed_service(empty_db)
    html = _render(empty_db, None)
    assert XSS_NAME not in html
    assert "<script>alert" not in html
    assert f"/inbox/{XSS_ESCAPED}" in section(html, "recent")
    drift = section(html, "score-drift")
    assert "No data: no evaluation scores of the serving model" in drift


def test_empty_database_renders_no_data_sections(empty_db: Database) -> None:
    html = _render(empty_db, None)
    assert_sections(html, OPS_SECTIONS)
    assert_self_contained(html)
    for section_id in OPS_SECTIONS[1:]:
        assert "No data:" in section(html, section_id), section_id
    assert "No verdicts yet in this period" in section(html, "overview")


def test_old_history_falls_outside_the_window(empty_db: Database) -> None:
    seed_service(empty_db, days_back=72)  # verdict i is 3*i days old: up to 69 days
    with empty_db.session() as s:
        data = collect(s, now=datetime.now(UTC), days=30)
    assert 0 < len(data.verdicts) < 27
    assert all(v.created_at is not None and v.created_at >= data.since for v in data.verdicts)
