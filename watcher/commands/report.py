"""`deepfake-detector report`: write the HTML reports now (watcher.reporting does the work)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Final

from storage.db import Database
from watcher import terminal
from watcher.reporting import ALL_KINDS, generate_reports
from watcher.settings import Settings

EXIT_FAILED: Final[int] = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `report` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="write the HTML reports (evaluation, eda, operations, review)",
        description="Write static, self-contained HTML reports into [reports] dir.",
    )
    parser.add_argument("kind", nargs="?", default="all", choices=(*ALL_KINDS, "all"))
    parser.add_argument("--out", type=Path, metavar="DIR", help="write here instead")
    parser.add_argument(
        "--data", type=Path, metavar="DIR", help="labelled data instead of [reports] data"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the requested reports and print the files written."""
    reports_cfg = settings.reports
    if args.out is not None:
        reports_cfg = dataclasses.replace(reports_cfg, dir=args.out.resolve())
    if args.data is not None:
        reports_cfg = dataclasses.replace(reports_cfg, data=args.data.resolve())
    settings = dataclasses.replace(settings, reports=reports_cfg)
    kinds = ALL_KINDS if args.kind == "all" else (args.kind,)
    db = Database.open(settings.storage)
    try:
        with terminal.progress_bar("writing reports", total=len(kinds)) as bar:
            result = generate_reports(settings, db, kinds, progress=bar)
    finally:
        db.close()
    for path in result.written:
        print(path)
    for kind, error in result.failed.items():
        print(f"deepfake-detector report: {kind} failed: {error}", file=sys.stderr)
    return EXIT_FAILED if result.failed else 0
