"""Throwaway PostgreSQL databases for the tests, on the server `scripts/with-postgres` starts.

`make test` runs pytest under scripts/with-postgres, which exports DEEPFAKE_DETECTOR_TEST_PG_URL
(any server works: `DEEPFAKE_DETECTOR_TEST_PG_URL=postgresql+psycopg://user@host/postgres`).
Without it the PostgreSQL variants skip with a loud reason, and fail under CI=true: a green CI
run must have run them.

Every test gets a database of its own: a copy of a template migrated once per run (tens of
milliseconds), or an empty one for the migration tests; it is dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.pool import NullPool

from storage.config import StorageConfig
from storage.db import Database

PG_URL_VARIABLE = "DEEPFAKE_DETECTOR_TEST_PG_URL"
PG_URL = os.environ.get(PG_URL_VARIABLE, "")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_postgres() -> str:
    """The server URL; without a server (or driver) skip loudly, or fail under CI=true."""
    problem = ""
    if not PG_URL:
        problem = f"NO POSTGRESQL: {PG_URL_VARIABLE} not set (make test starts a server)"
    else:
        try:
            import psycopg  # noqa: F401 (the driver of postgresql+psycopg URLs)
        except ImportError:
            problem = "NO POSTGRESQL DRIVER: psycopg is not installed (pip install -e '.[dev]')"
    if problem:
        if IN_CI:
            pytest.fail(problem + "; CI must run the PostgreSQL variants", pytrace=False)
        pytest.skip(problem)
    return PG_URL


class PgServer:
    """Creates and drops per-test databases on one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin: Engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._prefix = f"dfd_{secrets.token_hex(3)}"
        self._template: str | None = None

    def url_of(self, name: str) -> str:
        """The server URL with its database replaced by `name`."""
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(sql)

    def _migrated_template(self) -> str:
        """A database migrated to head, made once per run and copied per test."""
        if self._template is None:
            name = f"{self._prefix}_template"
            self._execute(f'CREATE DATABASE "{name}"')
            Database.open(StorageConfig(url=self.url_of(name))).close()
            self._template = name
        return self._template

    @contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """URL of a new database (at head, or empty), dropped on exit."""
        template = self._migrated_template() if migrated else "template0"
        name = f"{self._prefix}_{secrets.token_hex(4)}"
        # FILE_COPY: for a database this small much faster than PostgreSQL 15's WAL_LOG default.
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        try:
            yield self.url_of(name)
        finally:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template and release the admin engine."""
        if self._template is not None:
            self._execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
        self.admin.dispose()
