"""`deepfake-detector db copy --to URL`: move the whole history into another (empty) database.

For outgrowing the embedded SQLite default: copy it into PostgreSQL, then point every daemon's
`[storage] url` at PostgreSQL. The source is `[storage] url` unless `--from URL` names another.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Final

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from storage.copy import DEFAULT_CHUNK, CopyError, CopyResult, copy_database
from watcher.settings import Settings

EXIT_FAILED: Final[int] = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `db` sub-command and its `copy` action."""
    parser = subparsers.add_parser("db", help="database maintenance (copy to PostgreSQL)")
    actions = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    copy = actions.add_parser(
        "copy",
        help="copy every table into an empty database",
        description=(
            "Copy every table (files, verdicts, faces, evidence, registry, labels, evaluations, "
            "training runs ...) into an empty database, e.g. PostgreSQL, migrated first; "
            "verified by row counts. Stop the daemons first, or copy again later: rows written "
            "after the copy started are not copied."
        ),
    )
    copy.add_argument(
        "--to", required=True, metavar="URL", help="target, e.g. postgresql+psycopg://u@h/db"
    )
    copy.add_argument("--from", dest="source", metavar="URL", help="source (default: [storage])")
    copy.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="rows per INSERT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Copy, then print the row count of every table."""
    source = settings.storage
    if args.source:
        source = dataclasses.replace(source, url=args.source)
    target = dataclasses.replace(settings.storage, url=args.to)
    try:
        result = copy_database(source, target, chunk=max(1, args.chunk))
    except (CopyError, SQLAlchemyError, OSError) as exc:
        print(f"deepfake-detector db copy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(result, source.url, target.url))
    return 0


def _summary(result: CopyResult, source: str, target: str) -> str:
    width = max(len(name) for name in result.counts)
    lines = [f"{'table':<{width}}  {'source':>9}  {'target':>9}"]
    lines += [f"{name:<{width}}  {a:>9}  {b:>9}" for name, (a, b) in result.counts.items()]
    lines.append(
        f"copied {result.total} rows from {_safe(source)} to {_safe(target)} "
        f"in {result.seconds:.1f} s; every table's count matches"
    )
    return "\n".join(lines)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
