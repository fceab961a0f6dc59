"""Retraining and promotion: real tiny trainings, real evaluations, real registry rows.

The data's class signal is a colour tint (real warm, AI cool) under random brightness: the
tiny model learns it in a few epochs, the conftest's brightness-trained `tiny_bundle` is blind
to it (a weak champion to beat), and an almost untrained candidate (1 epoch, learning rate
1e-6) stays near chance (a weak candidate to reject).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detector.bundle import read_meta
from storage import queries as q
from storage.db import Database
from tests.storage.factories import Seed
from watcher import cli
from watcher.cli import main
from watcher.retrain import HUMAN_SOURCE, labelled_samples, run_retraining
from watcher.settings import Settings, load_settings

PER_SPLIT = {"train": 24, "validate": 10, "test": 12}  # images per class


def _tinted(path: Path, label: int, rng: np.random.Generator) -> None:
    tint = np.array([22.0, 0.0, -22.0]) * (1 if label == 0 else -1)
    pixels = rng.uniform(50, 200) + tint + rng.normal(0, 6, (32, 32, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def tint_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kaggle layout with manifest: two sources per class, PNG so no JPEG noise."""
    root = tmp_path_factory.mktemp("tint")
    rng = np.random.default_rng(0)
    rows = []
    for split, n in PER_SPLIT.items():
        for label, sources in ((0, ("cam", "web")), (1, ("gan", "sd"))):
            for i in range(n):
                rel = f"{split}/{label}/{sources[i % 2]}_{i:03d}.png"
                _tinted(root / rel, label, rng)
                rows.append(
                    {
                        "path": rel,
                        "split": split,
                        "label": label,
                        "class": ("real", "ai")[label],
                        "source": sources[i % 2],
                        "generator": sources[i % 2],
                    }
                )
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def write_config(folder: Path, data: Path) -> Path:
    """Tiny, fast training settings; the serving model is the registry's champion."""
    path = folder / "config.toml"
    path.write_text(
        f'[storage]\nurl = "sqlite:///var/test.db"\n\n'
        f'[detector]\nmodel = "default"\nmodel_store = "var/models"\n\n'
        f'[training]\ndata = "{data}"\narch = "tiny"\nimage_size = 32\nepochs = 8\n'
        f'batch_size = 16\nlearning_rate = 0.01\npatience = 20\ncache_dir = "var/cache"\n\n'
        f'[reports]\ndir = "var/reports"\ndata = "{data}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, tint_data: Path) -> Path:
    """The config file of the test's daemon."""
    return write_config(tmp_path, tint_data)


@pytest.fixture
def settings(config: Path) -> Settings:
    """Settings read from `config`."""
    return load_settings(config)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The project database (migrated)."""
    database = Database.open(settings.storage)
    yield database
    database.close()


def register_champion(db: Database, bundle: Path) -> str:
    """Make a bundle the registry's champion, as a past promotion would have."""
    meta = read_meta(bundle)
    with db.session() as s:
        q.register_model_version(
            s,
            version=meta.version,
            arch=meta.arch,
            path=str(bundle),
            input_size=meta.input_size,
            threshold=meta.threshold,
            data_fingerprint=meta.data_fingerprint,
            metrics={},
            training={},
            status="champion",
        )
    return meta.version


def champion(db: Database) -> str | None:
    with db.session() as s:
        row = q.champion(s)
        return row.version if row else None


def model_row(db: Database, version: str) -> dict[str, Any]:
    with db.session() as s:
        row = q.get_model_version(s, version)
        assert row is not None
        return {"status": row.status, "decision": row.decision}


def runs(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        return [
            {
                "status": r.status,
                "error": r.error,
                "candidate": r.candidate_version,
                "decision": r.decision,
            }
            for r in reversed(q.list_training_runs(s))
        ]


def label_inbox_image(db: Database, path: Path, label: str) -> str:
    """A screened inbox file that a person labelled."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with db.session() as s:
        row, _ = q.discover_file(s, path=str(path), size_bytes=1, mtime_ns=1, origin="inbox")
        q.upsert_image(s, sha, path.stat().st_size)
        # human_labels() only needs the image row and the file's latest recorded path.
        q.mark_rejected(s, row.id, code="unreadable", reason="placeholder", sha256=sha)
        q.set_label(s, sha, label)
    return sha


def test_better_candidate_is_promoted_weaker_one_rejected(
    settings: Settings, db: Database, tiny_bundle: Path, tmp_path: Path
) -> None:
    old = register_champion(db, tiny_bundle)
    _tinted(tmp_path / "inbox" / "warm.png", 0, np.random.default_rng(7))
    label_inbox_image(db, tmp_path / "inbox" / "warm.png", "real")

    better = run_retraining(settings, db, export_litert=False)
    assert better.status == "succeeded" and better.promoted, better.summary()
    assert champion(db) == better.candidate_version
    assert model_row(db, old)["status"] == "retired"
    first = runs(db)[0]
    assert first["status"] == "succeeded" and first["decision"]["promote"] is True
    assert first["decision"]["human_labels_used"] == 1
    reports = settings.reports.dir
    assert better.report is not None and better.report.is_file()
    assert "Promoted to champion." in better.report.read_text(encoding="utf-8")
    serving = (reports / "evaluation.html").read_text(encoding="utf-8")
    assert f'<code class="model-version">{better.candidate_version}</code>' in serving

    weaker = run_retraining(settings, db, epochs=1, learning_rate=1e-6, export_litert=False)
    assert weaker.status == "succeeded" and not weaker.promoted, weaker.summary()
    assert champion(db) == better.candidate_version  # untouched
    rejected = model_row(db, str(weaker.candidate_version))
    assert rejected["status"] == "rejected" and rejected["decision"]["promote"] is False
    assert any("below the champion" in r for r in rejected["decision"]["reasons"])
    assert weaker.report is not None
    page = weaker.report.read_text(encoding="utf-8")
    assert "Not promoted: the champion stays." in page
    assert f"champion {better.candidate_version}" in page  # compared with the champion
    with db.session() as s:
        cand = q.latest_evaluation(s, str(weaker.candidate_version))
        champ = q.latest_evaluation(s, str(better.candidate_version))
        assert cand is not None and champ is not None
        assert cand.data_fingerprint == champ.data_fingerprint  # same held-out data
        assert cand.dataset == champ.dataset


def test_failed_retraining_is_recorded_and_changes_nothing(
    tmp_path: Path, tint_data: Path, tiny_bundle: Path
) -> None:
    moved = tmp_path / "data-gone"
    settings = load_settings(write_config(tmp_path, moved))
    db = Database.open(settings.storage)
    try:
        old = register_champion(db, tiny_bundle)
        outcome = run_retraining(settings, db, export_litert=False)
        assert outcome.status == "failed" and "data folder not found" in str(outcome.error)
        [run] = runs(db)
        assert run["status"] == "failed" and "data folder not found" in run["error"]
        assert run["candidate"] is None
        assert champion(db) == old
        with db.session() as s:
            assert [m.version for m in q.list_model_versions(s)] == [old]
    finally:
        db.close()


def test_retrain_command_reports_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if "watcher.commands.schedule" not in cli.COMMAND_MODULES:  # until the lead lists it
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "watcher.commands.schedule")
        )
    config = write_config(tmp_path, tmp_path / "missing")
    assert main(["--config", str(config), "retrain", "--epochs", "1"]) == 1
    assert "failed: DatasetError: data folder not found" in capsys.readouterr().out


def test_human_labels_join_training_only(
    tmp_path: Path, settings: Settings, db: Database, tint_data: Path
) -> None:
    from training.datasets import load_layout

    splits = load_layout(tint_data)
    inbox = tmp_path / "inbox"
    good = inbox / "good.png"
    _tinted(good, 1, np.random.default_rng(1))
    leaked = inbox / "copy-of-test.png"  # the same bytes as a held-out test image
    leaked.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(splits.test[0].path, leaked)
    gone = inbox / "gone.png"
    _tinted(gone, 0, np.random.default_rng(2))
    label_inbox_image(db, good, "ai")
    label_inbox_image(db, leaked, "real")
    label_inbox_image(db, gone, "real")
    gone.unlink()
    extra = labelled_samples(db, splits, settings)
    assert [(s.path, s.label, s.split, s.source) for s in extra] == [
        (good, 1, "train", HUMAN_SOURCE)
    ]


def test_old_rejected_bundles_are_pruned_and_cannot_be_promoted(
    config: Path,
    settings: Settings,
    db: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import dataclasses

    from watcher.retrain import prune_rejected

    store = settings.detector.model_store
    outside = tmp_path / "elsewhere" / "r-outside"

    def bundle(version: str, status: str, folder: Path | None = None) -> Path:
        path = folder or store / version
        path.mkdir(parents=True)
        (path / "model.json").write_text("{}", encoding="utf-8")
        Seed(db).model(version, status, path=str(path))
        return path

    champ = bundle("champ", "champion")
    not_ours = bundle("r-outside", "rejected", outside)
    old, middle, newest = (bundle(f"r{i}", "rejected") for i in range(3))
    keep_one = dataclasses.replace(
        settings, training=dataclasses.replace(settings.training, keep_rejected=1)
    )
    removed = prune_rejected(keep_one, db)
    assert sorted(removed) == sorted([old.resolve(), middle.resolve()])
    assert newest.is_dir() and champ.is_dir() and not_ours.is_dir()
    assert not old.exists() and not middle.exists()
    assert model_row(db, "r0")["status"] == "rejected"  # the registry keeps the history
    assert main(["--config", str(config), "models", "promote", "r0"]) != 0
    assert "gone" in capsys.readouterr().err
    assert champion(db) == "champ"
