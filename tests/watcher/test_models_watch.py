"""Which bundle serves (config path, champion, bundled) and noticing that it changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from detector.bundle import bundled_model_dir
from storage import queries
from storage.db import Database
from watcher.models_watch import bundle_fingerprint, configured_bundle, resolve_model

from .conftest import Deployment


def test_configured_path_wins_and_may_name_the_model_file(deployment: Deployment) -> None:
    settings = deployment.write_config()
    with Database.open(settings.storage) as db:
        choice = resolve_model(settings, db)
    assert (choice.bundle_dir, choice.source) == (deployment.model, "config")
    deployment.model = deployment.model / "model.keras"
    assert configured_bundle(deployment.write_config()) == deployment.model.parent


def test_relative_model_path_resolves_against_the_config_folder(deployment: Deployment) -> None:
    shutil.copytree(deployment.model, deployment.root / "models" / "mine")
    deployment.model = Path("models/mine")
    settings = deployment.write_config()
    assert configured_bundle(settings) == deployment.root / "models" / "mine"


def test_default_uses_the_champion_else_the_bundled_model(
    deployment: Deployment, tmp_path: Path, tiny_bundle: Path
) -> None:
    deployment.model = Path("default")
    settings = deployment.write_config()
    champion_dir = tmp_path / "champion"
    shutil.copytree(tiny_bundle, champion_dir)
    with Database.open(settings.storage) as db:
        choice = resolve_model(settings, db)
        assert (choice.bundle_dir, choice.source) == (bundled_model_dir(), "bundled")
        with db.session() as s:
            queries.register_model_version(
                s,
                version="champ-1",
                arch="tiny",
                path=str(champion_dir),
                input_size=32,
                threshold=0.5,
                data_fingerprint="",
                metrics={},
                training={},
                status="champion",
            )
        choice = resolve_model(settings, db)
        assert (choice.bundle_dir, choice.source) == (champion_dir, "champion")
        shutil.rmtree(champion_dir)  # a champion whose bundle is gone falls back
        assert resolve_model(settings, db).source == "bundled"


def test_fingerprint_changes_when_the_bundle_is_replaced(tmp_path: Path, tiny_bundle: Path) -> None:
    bundle = tmp_path / "m"
    shutil.copytree(tiny_bundle, bundle)
    before = bundle_fingerprint(bundle)
    assert bundle_fingerprint(bundle) == before
    os.rename(bundle, tmp_path / "old")
    shutil.copytree(tiny_bundle, bundle)
    assert bundle_fingerprint(bundle) != before
    again = bundle_fingerprint(bundle)
    (bundle / "model.tflite").write_bytes(b"rewritten in place")
    assert bundle_fingerprint(bundle) != again
