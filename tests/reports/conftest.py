"""Fixtures for report tests (the data they build lives in report_data.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.config import StorageConfig
from storage.db import Database
from watcher.settings import Settings

# --import-mode=importlib puts no test folder on sys.path; the helper modules beside this file
# (report_data, html_checks) have names no other package uses.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_data import (
    GeneratedSite,
    TinyDataset,
    generate_site,
    make_settings,
    write_dataset,
)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyDataset:
    """The tiny dataset (session-wide: tests only read it)."""
    return write_dataset(tmp_path_factory.mktemp("faces"))


@pytest.fixture
def settings(tmp_path: Path, tiny_bundle: Path, tiny_dataset: TinyDataset) -> Settings:
    """Reports on the tiny dataset, served by the tiny model (configured bundle path)."""
    return make_settings(
        tmp_path,
        detector={"model": str(tiny_bundle), "backend": "keras"},
        reports={"data": str(tiny_dataset.root), "eda_sample": 20},
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The settings' database, migrated."""
    database = Database.open(settings.storage)
    yield database
    database.close()


@pytest.fixture
def empty_db(tmp_path: Path) -> Iterator[Database]:
    """A fresh migrated database with no rows."""
    database = Database.open(StorageConfig(url=f"sqlite:///{tmp_path / 'empty.db'}"))
    yield database
    database.close()


@pytest.fixture(scope="session")
def generated_site(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, tiny_dataset: TinyDataset
) -> GeneratedSite:
    """`deepfake-detector report all` run once through the CLI on a database with history
    (session-wide: the tests that use it only read the files)."""
    return generate_site(tmp_path_factory.mktemp("site"), tiny_bundle, tiny_dataset.root)
