"""`deepfake-detector train` and `evaluate` end to end on a tiny dataset and a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.bundle import read_meta
from storage import queries
from storage.config import StorageConfig
from storage.db import Database
from watcher.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///{tmp_path / "db.sqlite"}"

[detector]
model_store = "{tmp_path / "models"}"

[training]
arch = "tiny"
image_size = 32
epochs = 2
batch_size = 8
learning_rate = 0.02
cache_dir = "{tmp_path / "cache"}"
""",
        encoding="utf-8",
    )
    return path


def open_db(tmp_path: Path) -> Database:
    return Database.open(StorageConfig(url=f"sqlite:///{tmp_path / 'db.sqlite'}"))


def test_train_then_evaluate(
    config: Path, kaggle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(config), "train", "--data", str(kaggle_dir), "--no-tflite"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "train:    24 images  real    12  ai    12" in out
    assert "[test]" in out and "per source:" in out
    bundles = [p for p in (tmp_path / "models").iterdir() if p.name != "runs"]
    assert len(bundles) == 1
    meta = read_meta(bundles[0])
    assert meta.arch == "tiny"
    assert (tmp_path / "models" / "runs" / meta.version / "checkpoints").is_dir()

    db = open_db(tmp_path)
    try:
        with db.session() as s:
            row = queries.get_model_version(s, meta.version)
            assert row is not None and row.status == "candidate"
            assert row.path == str(bundles[0])
            assert len(row.training["history"]["val_loss"]) == 2
            assert row.metrics["test"]["accuracy"] == meta.metrics["test"]["accuracy"]
            runs = queries.list_training_runs(s)
            assert [(r.status, r.candidate_version) for r in runs] == [("succeeded", meta.version)]
            assert queries.latest_evaluation(s, meta.version) is not None
    finally:
        db.close()

    code = main(
        [
            "--config",
            str(config),
            "evaluate",
            "--data",
            str(kaggle_dir),
            "--model",
            meta.version,
            "--split",
            "validate",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == meta.version
    assert report["n"] == 12
    for key in (
        "loss",
        "accuracy",
        "roc_auc",
        "average_precision",
        "ece",
        "classification_report",
        "confusion_matrix",
        "per_source",
        "threshold_sweep",
    ):
        assert key in report, key
    db = open_db(tmp_path)
    try:
        with db.session() as s:
            latest = queries.latest_evaluation(s, meta.version)
            assert latest is not None and latest.dataset.endswith(":validate")
            assert latest.metrics["n"] == 12
    finally:
        db.close()


def test_evaluate_by_path_without_storing(
    config: Path, kaggle_dir: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--config",
            str(config),
            "evaluate",
            "--data",
            str(kaggle_dir),
            "--model",
            str(tiny_bundle),
            "--no-store",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "on test split" in out and "ROC AUC" in out


def test_train_plain_layout_with_out_folder(
    config: Path, plain_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "bundled"
    code = main(
        [
            "--config",
            str(config),
            "train",
            "--data",
            str(plain_dir),
            "--epochs",
            "1",
            "--out",
            str(out_dir),
            "--no-register",
            "--no-tflite",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert read_meta(out_dir).training["dataset"]["layout"] == "plain"
    assert not (tmp_path / "db.sqlite").exists()


def test_train_with_a_held_out_source_reports_it_as_unseen(
    config: Path, kaggle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "held-out"
    args = ["--config", str(config), "train", "--data", str(kaggle_dir), "--epochs", "1"]
    flags = ["--hold-out-source", "gen_b", "--no-augment", "--no-register", "--no-tflite"]
    code = main([*args, "--out", str(out_dir), *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "held out of train and validate: gen_b" in out
    assert "train:    18 images  real    12  ai     6" in out
    meta = read_meta(out_dir)
    assert meta.training["dataset"]["unseen_sources"] == ["gen_b"]
    assert meta.training["dataset"]["distribution"]["train"]["sources"].get("gen_b") is None
    assert meta.training["config"]["augment"]["flip"] is False
    unseen = meta.metrics["test"]["per_source"]["gen_b"]["accuracy"]
    assert f"unseen by training: gen_b accuracy {unseen:.3f}" in out

    code = main([*args, "--hold-out-source", "gen_z", "--no-register"])
    assert code == 1
    assert "unknown source(s) gen_z" in capsys.readouterr().err


def test_bad_data_folder_fails_cleanly(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(config), "train", "--data", str(tmp_path / "nope")])
    assert code == 1
    assert "data folder not found" in capsys.readouterr().err
