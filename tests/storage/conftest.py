"""Fixtures for storage tests: a real SQLite file in tmp_path, migrated, plus row factories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.config import StorageConfig
from storage.db import Database
from tests.storage.factories import Seed


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test database lives (its folder does not exist yet)."""
    return tmp_path / "var" / "verdicts.db"


@pytest.fixture
def storage_cfg(db_path: Path) -> StorageConfig:
    """Config pointing at db_path, with a short busy timeout to keep lock tests quick."""
    return StorageConfig(url=f"sqlite:///{db_path}", busy_timeout_ms=2_000)


@pytest.fixture
def db(storage_cfg: StorageConfig) -> Iterator[Database]:
    """An opened (migrated) database, closed after the test."""
    database = Database.open(storage_cfg)
    yield database
    database.close()


@pytest.fixture
def seed(db: Database) -> Seed:
    """Row factories bound to the test database."""
    return Seed(db)
