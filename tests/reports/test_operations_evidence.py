"""The operations report counts uncertain verdicts and those provenance metadata decided."""

from __future__ import annotations

from html_checks import section

from reports.operations import build_operations_page, collect
from reports.page import Stamp, render_page
from storage import queries as q
from storage.db import Database
from storage.models import utcnow

VERDICTS = [  # (label the model gave, verdict, decided_by)
    ("real", "real", "model"),
    ("ai", "uncertain", "model"),
    ("real", "uncertain", "model"),
    ("real", "ai", "provenance"),
    ("ai", "ai", "model"),
]


def test_overview_counts_uncertain_and_provenance_verdicts(empty_db: Database) -> None:
    with empty_db.session() as s:
        model = q.register_model_version(
            s,
            version="tiny-v1",
            arch="tiny",
            path="/m",
            input_size=32,
            threshold=0.5,
            data_fingerprint="fp",
            metrics={},
            training={},
            status="champion",
        ).id
        items = []
        for n, (label, verdict, decided_by) in enumerate(VERDICTS):
            row, _ = q.discover_file(
                s, path=f"/in/{n}.jpg", size_bytes=1, mtime_ns=1, origin="inbox"
            )
            items.append(
                q.ClassifiedFile(
                    file_id=row.id,
                    sha256=f"{n:064d}",
                    size_bytes=1,
                    width=8,
                    height=8,
                    format="JPEG",
                    model_version_id=model,
                    score=0.5,
                    label=label,
                    decode_ms=1.0,
                    infer_ms=1.0,
                    disposition="kept",
                    verdict=verdict,
                    decided_by=decided_by,
                )
            )
        q.store_classified(s, items)
    with empty_db.session() as s:
        data = collect(s, now=utcnow(), days=30)
    page = build_operations_page(data, stamp=Stamp.now("tiny-v1", "fp"), reference_scores=None)
    html = render_page(page)
    overview = section(html, "overview")
    assert '<td>ai</td><td class="num">2</td>' in overview
    assert 'uncertain (in the model&#39;s band, for review)</td><td class="num">2<' in overview
    assert 'ai by provenance metadata</td><td class="num">1<' in overview
    assert "uncertain" in section(html, "verdicts-over-time")
