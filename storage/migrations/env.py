"""Alembic environment: runs migrations on the connection storage.migrate hands over.

Database.open passes an open connection (already inside a locked transaction) through
`config.attributes["connection"]`. The URL fallback only serves developers generating revisions:
`python -m storage.migrate -x url=sqlite:///var/dev.db revision --autogenerate -m "..."`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    """The database URL given with `-x url=...` (or a sqlalchemy.url main option)."""
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=<SQLAlchemy URL>")
    return url


def _run(connection: Connection) -> None:
    """Configure the context on `connection` and run the pending migrations."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the migration SQL as text (`alembic upgrade --sql`)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the handed-over connection, or a throwaway engine for the developer CLI."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
