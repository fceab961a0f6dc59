"""`deepfake-detector report` end to end: real config file, real tiny model, real database."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from html_checks import EVAL_SECTIONS, assert_sections, assert_self_contained, charts_in, section
from report_data import XSS_ESCAPED, GeneratedSite, TinyDataset, write_config

from detector.bundle import read_meta
from storage import queries as q
from storage.db import Database
from training.datasets import fingerprint, load_layout
from watcher.cli import main
from watcher.reporting import generate_reports
from watcher.settings import Settings

PAGES = ("evaluation.html", "eda.html", "operations.html", "review.html")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_report_all_writes_private_self_contained_pages(
    generated_site: GeneratedSite, tiny_bundle: Path
) -> None:
    site = generated_site
    out = site.out_dir
    assert site.exit_code == 0
    version = read_meta(tiny_bundle).version
    assert _mode(out) == 0o700
    assert sorted(p.name for p in out.glob("*.html")) == sorted([*PAGES, "index.html"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    for name in (*PAGES, "index.html"):
        html = (out / name).read_text(encoding="utf-8")
        assert str(out / name) in site.stdout
        assert _mode(out / name) == 0o600
        assert_self_contained(html)
        assert f'<code class="model-version">{version}</code>' in html
        assert '<code class="data-fingerprint">none</code>' not in html
    index = (out / "index.html").read_text(encoding="utf-8")
    for name in PAGES:
        assert f'href="{name}"' in index
    ops = (out / "operations.html").read_text(encoding="utf-8")
    assert XSS_ESCAPED in ops
    # The evaluation just stored gives the drift section its reference scores.
    assert "No data" not in section(ops, "score-drift")


def test_evaluation_report_contents(
    settings: Settings, db: Database, tiny_dataset: TinyDataset
) -> None:
    result = generate_reports(settings, db, ["evaluation"])
    assert result.failed == {}
    html = (settings.reports.dir / "evaluation.html").read_text(encoding="utf-8")
    assert_sections(html, EVAL_SECTIONS)
    # The tiny from-scratch model records no invariance, leave-one-source-out or quality
    # figures (only the pretrained run measures them): those sections say so.
    unrecorded = ("comparison", "invariance", "loso", "band", "quality")
    rest = html
    for name in unrecorded:
        rest = rest.replace(section(html, name), "")
    assert "No data" not in rest
    assert "No data: no previous model." in section(html, "comparison")
    assert "does not record it" in section(html, "loso")
    assert charts_in(html) >= 6  # confusion, ROC, PR, reliability, per source, curves
    mistakes = section(html, "mistakes")
    assert "test/1/gen_x_dark.jpg" in mistakes and "test/0/cam_a_bright.jpg" in mistakes
    assert mistakes.count('src="data:image/jpeg;base64,') >= 2
    for source in ("cam_a", "cam_b", "gen_x", "gen_y"):
        assert f"<td>{source}</td>" in section(html, "per-source")
    assert "<td>accuracy</td>" in section(html, "metrics")
    with db.session() as s:
        row = q.latest_evaluation(s, read_meta(Path(settings.detector.model)).version)
        assert row is not None and len(row.metrics["per_image"]["scores"]) == 15


def test_scheduled_regeneration_reuses_the_stored_evaluation(
    settings: Settings, db: Database
) -> None:
    generate_reports(settings, db, ["evaluation"], reuse=True)
    generate_reports(settings, db, ["evaluation"], reuse=True)
    with db.session() as s:
        version = read_meta(Path(settings.detector.model)).version
        evaluations = [
            e for m in q.list_model_versions(s) for e in [q.latest_evaluation(s, m.version)] if e
        ]
    assert len(evaluations) == 1
    generate_reports(settings, db, ["evaluation"])  # the command itself always re-evaluates
    with db.session() as s:
        from storage.models import Evaluation

        assert s.query(Evaluation).count() == 2
        assert version


def test_comparison_with_the_previous_champion(
    settings: Settings, db: Database, tiny_dataset: TinyDataset
) -> None:
    splits = load_layout(tiny_dataset.root)
    dataset, fp = f"{splits.root}:test", fingerprint(splits.test)
    with db.session() as s:
        q.register_model_version(
            s,
            version="old-champ",
            arch="tiny",
            path="/x",
            input_size=32,
            threshold=0.5,
            data_fingerprint="",
            metrics={},
            training={},
        )
        q.promote(s, "old-champ", {"promote": True, "reasons": ["first"]})
        q.add_evaluation(
            s,
            version="old-champ",
            dataset=dataset,
            data_fingerprint=fp,
            metrics={"accuracy": 0.5, "per_source": {"cam_a": {"accuracy": 0.25}}},
        )
        meta = read_meta(Path(settings.detector.model))
        q.register_model_version(
            s,
            version=meta.version,
            arch="tiny",
            path="/y",
            input_size=32,
            threshold=0.5,
            data_fingerprint="",
            metrics={},
            training={},
        )
        q.promote(s, meta.version, {"promote": True, "reasons": ["better"]})
    generate_reports(settings, db, ["evaluation"])
    html = (settings.reports.dir / "evaluation.html").read_text(encoding="utf-8")
    comparison = section(html, "comparison")
    assert "previous champion old-champ" in comparison
    assert '<td>accuracy · cam_a</td><td class="num">0.25</td>' in comparison


def test_missing_data_renders_no_data_instead_of_failing(
    tmp_path: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "config.toml", tiny_bundle, None)
    assert main(["--config", str(config), "report"]) == 0
    out = tmp_path / "out" / "reports"
    assert str(out / "index.html") in capsys.readouterr().out
    evaluation = (out / "evaluation.html").read_text(encoding="utf-8")
    # The tiny model records no test evaluation and no training data to fall back on.
    assert "No data: no evaluation data is configured ([reports] data), and the model" in evaluation
    eda = (out / "eda.html").read_text(encoding="utf-8")
    assert "No data: No training data to describe: set [reports] data in config.toml" in eda
    operations = (out / "operations.html").read_text(encoding="utf-8")
    assert "No verdicts yet" in operations


def test_public_reports_when_not_private(settings: Settings, db: Database) -> None:
    public = dataclasses.replace(
        settings, reports=dataclasses.replace(settings.reports, private=False)
    )
    generate_reports(public, db, ["operations"])
    assert _mode(public.reports.dir / "operations.html") == 0o644
    assert _mode(public.reports.dir / "index.html") == 0o644
