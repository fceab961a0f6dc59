"""Verdict storage: SQLAlchemy models, the Database handle, Alembic migrations, queries."""
