"""`deepfake-detector verdicts`: list stored verdicts as a table, CSV or JSON lines."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from storage import queries
from storage.db import Database
from storage.queries import VERDICT_COLUMNS, VerdictRow
from watcher import terminal
from watcher.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
# The table shows what a person scans for; csv and json carry every view column.
TABLE_COLUMNS = (
    "id",
    "created_at",
    "status",
    "label",
    "score",
    "faces",
    "decided_by",
    "model_version",
    "origin",
    "location",
    "reason",
    "evidence",
)


def parse_since(value: str) -> datetime:
    """argparse type: an ISO date or datetime; naive values are UTC."""
    try:
        # A bare date parses as its midnight.
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or time: {value!r} (e.g. 2025-11-25 or 2025-11-25T10:00:00+01:00)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _limit(value: str) -> int:
    """argparse type: a non-negative integer (0 = no limit)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {number}")
    return number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `verdicts` sub-command."""
    parser = subparsers.add_parser(
        "verdicts",
        help="list stored verdicts",
        description="List screened files, newest first (the `verdicts` database view).",
    )
    parser.add_argument("--label", choices=("ai", "real", "uncertain"), help="only this label")
    parser.add_argument(
        "--status", choices=("classified", "rejected"), help="only classified or rejected files"
    )
    parser.add_argument(
        "--origin",
        choices=("inbox", "scan", "api"),
        help="only files from an inbox, from one-off `scan` checks, or posted to the HTTP API",
    )
    parser.add_argument(
        "--since",
        type=parse_since,
        metavar="ISO-TIME",
        help="only verdicts at or after this date/time (no time zone = UTC)",
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N rows (default {DEFAULT_LIMIT}; 0 = all)",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json", "jsonl"),
        default="table",
        help="output format: json is one JSON array, jsonl one JSON object per line",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Query the verdicts and print them in the chosen format."""
    db = Database.open(settings.storage)
    try:
        with db.session() as session:
            rows = queries.list_verdicts(
                session,
                label=args.label,
                status=args.status,
                since=args.since,
                limit=args.limit or None,
                origin=args.origin,
            )
            faces = (
                queries.faces_for_files(session, [r.id for r in rows])
                if args.format in ("json", "jsonl")
                else {}
            )
    finally:
        db.close()
    if args.format in ("json", "jsonl"):
        write_json(rows, sys.stdout, faces, lines=args.format == "jsonl")
        return 0
    writers = {"table": write_table, "csv": write_csv}
    writers[args.format](rows, sys.stdout)
    return 0


def write_json(
    rows: Sequence[VerdictRow],
    out: TextIO,
    faces: Mapping[int, Sequence[queries.FaceRecord]] | None = None,
    *,
    lines: bool = False,
) -> None:
    """Each verdict as an object (the view's columns, `location`, then `face_list`: every
    face): one JSON array, or with `lines` one object per line (JSON Lines)."""
    objects = []
    for row in rows:
        data = {**row.to_dict(), "location": row.location}
        found = (faces or {}).get(row.id, [])
        data["face_list"] = None if row.faces is None else [f.to_json_dict() for f in found]
        objects.append(data)
    if lines:
        out.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
    else:
        out.write(json.dumps(objects, ensure_ascii=False, indent=1) + "\n")


def write_csv(rows: Sequence[VerdictRow], out: TextIO) -> None:
    """CSV with a header row and every view column."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(VERDICT_COLUMNS)
    for row in rows:
        data = row.to_dict()
        writer.writerow(["" if data[c] is None else data[c] for c in VERDICT_COLUMNS])


def write_table(rows: Sequence[VerdictRow], out: TextIO) -> None:
    """Aligned columns for people; the path goes last so long paths don't push others out."""
    if not rows:
        out.write("no verdicts match\n")
        return
    cells = [[_cell(name, getattr(row, name)) for name in TABLE_COLUMNS] for row in rows]
    terminal.write_table(out, [name.upper() for name in TABLE_COLUMNS], cells)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if name == "score":
        return f"{value:.4f}"
    return str(value)
