"""Settings owned by the storage package (the `[storage]` table of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where verdicts are stored."""

    # Any SQLAlchemy URL; a relative SQLite path resolves against the config file's folder.
    url: str = "sqlite:///var/deepfake-detector.db"
    # How long a SQLite writer waits for a lock held by another process.
    busy_timeout_ms: int = 10_000
    # Create the database file and its folder private (0600 / 0700).
    private: bool = True
