"""Reports on a first run, with no [reports] data: the serving model's recorded evaluation and its
recorded training data fill the evaluation and EDA pages; the EDA's facts are cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from html_checks import EDA_SECTIONS, EVAL_SECTIONS, section
from report_data import TinyDataset, make_settings, write_dataset

from reports import eda, edacache
from reports.eda import compute_facts
from reports.recorded import how_to_point_at_data
from storage.db import Database
from training.datasets import fingerprint, load_layout
from watcher.reporting import CACHE_DIR, generate_reports
from watcher.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_META = ROOT / "detector" / "bundled" / "model.json"
# The model.json of the first shipped model (hp_cnn, whole picture only, one data folder): the
# pages must keep working with bundles trained before the face views and several folders.
OLD_META = Path(__file__).resolve().parent / "data" / "model_hp_cnn_20261125.json"
# Every section the page shows for live data except the per-image ones (mistakes).
LIVE_SECTIONS = tuple(s for s in EVAL_SECTIONS[1:9] if s != "mistakes")


def _bundle(
    folder: Path, source: Path = BUNDLED_META, **training: Any
) -> tuple[Path, dict[str, Any]]:
    """A model folder holding a shipped model's model.json (reports only read the metadata)."""
    meta = json.loads(source.read_text(encoding="utf-8"))
    meta["training"] = {**meta["training"], **training}
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder, meta


def _settings(tmp_path: Path, bundle: Path) -> Settings:
    return make_settings(tmp_path, detector={"model": str(bundle)}, reports={"eda_sample": 20})


def _generate(settings: Settings, kinds: list[str]) -> dict[str, str]:
    db = Database.open(settings.storage)
    try:
        result = generate_reports(settings, db, kinds)
    finally:
        db.close()
    assert not result.failed, result.failed
    return {k: (settings.reports.dir / f"{k}.html").read_text(encoding="utf-8") for k in kinds}


@pytest.mark.parametrize("source", [BUNDLED_META, OLD_META], ids=["bundled", "hp_cnn"])
def test_evaluation_without_data_shows_the_recorded_figures(tmp_path: Path, source: Path) -> None:
    bundle, meta = _bundle(tmp_path / "model", source)
    html = _generate(_settings(tmp_path, bundle), ["evaluation"])["evaluation"]
    recorded = section(html, "recorded")
    test = meta["metrics"]["test"]
    assert "figures recorded when the model was trained" in recorded
    assert meta["created_at"] in recorded
    assert meta["data_fingerprint"][:12] in recorded
    assert "../shared/datasets/faces" in recorded
    for sid in LIVE_SECTIONS:
        assert "No data:" not in section(html, sid), sid
    assert html.count("<img") >= 5  # confusion, ROC, PR, reliability, per-source
    assert f"{test['roc_auc']:.4g}" in section(html, "metrics")
    assert sorted(test["per_source"])[0] in section(html, "per-source")
    assert "does not record" not in recorded  # the shipped model.json has every piece
    assert "model.json records no per-image results" in section(html, "mistakes")


def test_recorded_figures_missing_pieces_are_named(tmp_path: Path) -> None:
    bundle, meta = _bundle(tmp_path / "model", OLD_META)
    test = meta["metrics"]["test"]
    del test["curves"], test["threshold_sweep"]
    (bundle / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    html = _generate(_settings(tmp_path, bundle), ["evaluation"])["evaluation"]
    assert "does not record: ROC and precision-recall curve points, threshold sweep" in section(
        html, "recorded"
    )
    for sid in ("curves", "calibration", "threshold-sweep"):
        assert "No data: the model.json of this model does not record it" in section(html, sid)
    assert "No data:" not in section(html, "confusion-matrix")


def test_a_model_without_a_recorded_evaluation_says_so(tmp_path: Path) -> None:
    bundle, meta = _bundle(tmp_path / "model")
    meta["metrics"] = {}
    (bundle / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    html = _generate(_settings(tmp_path, bundle), ["evaluation"])["evaluation"]
    assert "model.json records no test evaluation" in section(html, "metrics")


def test_live_data_wins_over_the_recorded_figures(
    tmp_path: Path, tiny_bundle: Path, tiny_dataset: TinyDataset
) -> None:
    bundle = tmp_path / "model"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    meta["metrics"] = json.loads(OLD_META.read_text(encoding="utf-8"))["metrics"]
    (bundle / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    settings = make_settings(
        tmp_path,
        detector={"model": str(bundle), "backend": "keras"},
        reports={"data": str(tiny_dataset.root), "eda_sample": 20},
    )
    html = _generate(settings, ["evaluation"])["evaluation"]
    assert 'id="recorded"' not in html
    assert "stylegan_140k" not in html
    assert "gen_x" in section(html, "per-source")


@pytest.mark.parametrize("shape", ["dataset.root", "data list"])
def test_eda_describes_the_recorded_training_data(
    tmp_path: Path, tiny_dataset: TinyDataset, shape: str
) -> None:
    recorded: dict[str, Any]
    if shape == "dataset.root":
        recorded = {"dataset": {"root": str(tiny_dataset.root)}}
    else:
        recorded = {"data": [str(tiny_dataset.root)], "dataset": {"root": "/nowhere"}}
    bundle, _ = _bundle(tmp_path / "model", **recorded)
    html = _generate(_settings(tmp_path, bundle), ["eda"])["eda"]
    for sid in EDA_SECTIONS:
        assert "No data:" not in section(html, sid), sid
    overview = section(html, "overview")
    assert "recorded training data" in overview
    # The shipped model was trained on other data: the page says the files differ.
    assert "differ from the data the model was trained on" in overview


def test_eda_combines_several_recorded_folders(tmp_path: Path, tiny_dataset: TinyDataset) -> None:
    second = write_dataset(tmp_path / "data" / "second")
    bundle, _ = _bundle(
        tmp_path / "model", dataset={"root": [str(tiny_dataset.root), str(second.root)]}
    )
    html = _generate(_settings(tmp_path, bundle), ["eda"])["eda"]
    n = len(load_layout(tiny_dataset.root).all()) + len(load_layout(second.root).all())
    assert f"{n} files listed" in section(html, "overview")


def test_relative_recorded_folders_resolve_against_the_config_folder(
    tmp_path: Path, tiny_dataset: TinyDataset
) -> None:
    shutil.copytree(tiny_dataset.root, tmp_path / "shared" / "faces")
    bundle, _ = _bundle(tmp_path / "model", dataset={"root": "shared/faces"})
    html = _generate(_settings(tmp_path, bundle), ["eda"])["eda"]
    assert "No data:" not in section(html, "features")


def test_eda_without_recorded_data_on_disk_says_how_to_point_it(tmp_path: Path) -> None:
    bundle, _ = _bundle(tmp_path / "model", dataset={"root": str(tmp_path / "gone")})
    html = _generate(_settings(tmp_path, bundle), ["eda"])["eda"]
    sentence = how_to_point_at_data([str(tmp_path / "gone")])
    assert sentence.count(". ") == 0 and sentence.endswith(".")  # one sentence
    assert "set [reports] data in config.toml" in section(html, "data")
    assert str(tmp_path / "gone") in section(html, "data")


def test_regeneration_reuses_the_cached_facts(
    tmp_path: Path, tiny_dataset: TinyDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, _ = _bundle(tmp_path / "model", dataset={"root": str(tiny_dataset.root)})
    settings = _settings(tmp_path, bundle)
    first = _generate(settings, ["eda"])["eda"]
    cached = list((settings.reports.dir / CACHE_DIR).glob("eda-*.npz"))
    assert len(cached) == 1
    assert cached[0].stat().st_mode & 0o777 == 0o600

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the EDA read the files again instead of using its cache")

    monkeypatch.setattr(eda, "file_facts", no_reading)
    monkeypatch.setattr(eda, "pixel_features", no_reading)
    second = _generate(settings, ["eda"])["eda"]
    for sid in ("class-distribution", "duplicates", "features", "pca"):
        assert section(first, sid) == section(second, sid), sid


def test_cache_round_trip_and_misses(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    samples = load_layout(data.root).all()
    facts = compute_facts(samples, 8, 1337)
    path = edacache.cache_path(tmp_path / "cache", fingerprint(samples), 8, 1337)
    edacache.save(facts, path)
    loaded = edacache.load(path, samples)
    assert loaded is not None
    assert [f.sha256 for f in loaded.facts] == [f.sha256 for f in facts.facts]
    assert [f.phash for f in loaded.facts] == [f.phash for f in facts.facts]
    assert [str(f.path) for f in loaded.measured.facts] == [
        str(f.path) for f in facts.measured.facts
    ]
    for a, b in zip(loaded.measured.vectors, facts.measured.vectors, strict=True):
        assert (a == b).all()
    assert loaded.measured.features == facts.measured.features
    for a_fact, b_fact in zip(loaded.facts, facts.facts, strict=True):
        assert a_fact.grey is not None and b_fact.grey is not None
        assert (a_fact.grey == b_fact.grey).all()
    # Other files (a renamed folder) or a damaged file are misses, never wrong facts.
    assert edacache.load(path, samples[1:]) is None
    path.write_bytes(b"not a zip")
    assert edacache.load(path, samples) is None
    assert edacache.load(tmp_path / "absent.npz", samples) is None
