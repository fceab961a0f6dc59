"""Helpers shared by the query modules: argument checks, chunking, get-or-create, ON CONFLICT."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import Base, enum_value

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Base)
T = TypeVar("T")

# Rows of an IN (...) list per statement: far below SQLite's and PostgreSQL's parameter limits.
_CHUNK = 500


class NotFound(LookupError):
    """A row the caller named (model version, file, image...) does not exist."""


def _choice(name: str, value: str | enum.Enum, allowed: Iterable[Any]) -> str:
    """The stored string for `value`; ValueError naming the argument when it is not allowed."""
    text = enum_value(value)
    options = [enum_value(a) for a in allowed]
    if text not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, not {text!r}")
    return text


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _get_or_create(
    s: Session, model: type[M], key: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[M, bool]:
    """Find the row with `key`, or insert it; survives a concurrent insert of the same key."""
    existing = s.scalars(select(model).filter_by(**key)).one_or_none()
    if existing is not None:
        return existing, False
    row = model(**key, **values)
    try:
        # A savepoint, so losing the race rolls back only this insert, not the caller's work.
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        logger.debug("%s %s inserted concurrently; using that row", model.__name__, dict(key))
        return s.scalars(select(model).filter_by(**key)).one(), False
    return row, True


def _insert_skipping_existing(s: Session, model: type[Base], unique: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (unique) DO NOTHING for the session's dialect.

    A row whose key exists, or was inserted by a concurrent transaction (PostgreSQL waits for
    that one to commit), is skipped instead of failing the statement: the set-based form of
    _get_or_create's savepoint, without a savepoint per row.
    """
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=list(unique))
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=list(unique))
    raise NotImplementedError(f"no INSERT ... ON CONFLICT for the {dialect} dialect")


def _require(s: Session, model: type[M], row_id: int) -> M:
    row = s.get(model, row_id)
    if row is None:
        raise NotFound(f"no {model.__tablename__} row with id {row_id}")
    return row
