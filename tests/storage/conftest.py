"""Fixtures for storage tests: the test's own database, migrated, plus row factories.

Every test here runs twice, on a real SQLite file in tmp_path and on a fresh PostgreSQL
database (tests/conftest.py parametrizes `backend`); a test that asks for `db_path` looks at
the SQLite file itself and runs on SQLite only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.config import StorageConfig
from storage.db import Database
from tests.storage.factories import Seed


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the SQLite test database lives (its folder does not exist yet)."""
    return tmp_path / "var" / "verdicts.db"


@pytest.fixture
def storage_cfg(db_url: str) -> StorageConfig:
    """Config of the test's database, with a short busy timeout to keep lock tests quick."""
    return StorageConfig(url=db_url, busy_timeout_ms=2_000)


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
