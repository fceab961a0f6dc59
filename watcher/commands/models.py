"""`deepfake-detector models`: the bundled model, the registry, promote and rollback."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session

from detector.bundle import META_FILE
from storage import queries
from storage.db import Database
from storage.models import ModelStatus, ModelVersion
from watcher import terminal
from watcher.settings import Settings

logger = logging.getLogger(__name__)

EXIT_ERROR = 1
LIST_COLUMNS = ("version", "status", "arch", "created", "accuracy", "roc_auc")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `models` sub-command with its `promote` and `rollback` actions."""
    parser = subparsers.add_parser(
        "models",
        help="list, promote or roll back model versions",
        description="Without an action: show the bundled model and every registered version.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    promote = actions.add_parser("promote", help="put VERSION in service (old champion retired)")
    promote.add_argument("version", metavar="VERSION")
    actions.add_parser(
        "rollback", help="bring back the most recently retired champion (current one retired)"
    )
    parser.set_defaults(func=run, models_action=None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch to list / promote / rollback."""
    db = Database.open(settings.storage)
    try:
        if args.models_action == "promote":
            return promote_version(db, args.version, sys.stdout)
        if args.models_action == "rollback":
            return rollback(db, sys.stdout)
        return list_models(db, settings, sys.stdout)
    finally:
        db.close()


def _manual_decision(action: str) -> dict[str, Any]:
    """The decision record of a change made by hand (the gate records automatic ones)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return {
        "promote": True,
        "by": "manual",
        "action": action,
        "user": user,
        "at": datetime.now(UTC).isoformat(),
        "reasons": [f"manual {action} from the command line"],
    }


def promote_version(db: Database, version: str, out: TextIO) -> int:
    """Make `version` the champion; its predecessor is retired."""

    def change(session: Session) -> str | None:
        target = queries.get_model_version(session, version)
        if target is not None and not (Path(target.path) / META_FILE).is_file():
            # e.g. a rejected candidate whose bundle was pruned ([training] keep_rejected).
            raise queries.NotFound(f"the bundle of {version} is gone from {target.path}")
        previous = queries.champion(session)
        queries.promote(session, version, _manual_decision("promote"))
        return previous.version if previous is not None else None

    try:
        previous = db.retrying(change)
    except queries.NotFound as exc:
        print(f"deepfake-detector: {exc}", file=sys.stderr)
        return EXIT_ERROR
    suffix = f" ({previous} retired)" if previous not in (None, version) else ""
    out.write(f"{version} is now the champion{suffix}\n")
    return 0


def rollback(db: Database, out: TextIO) -> int:
    """Return to the most recently retired champion."""

    def change(session: Session) -> tuple[str | None, str]:
        retired, restored = queries.rollback_champion(session, _manual_decision("rollback"))
        return (retired.version if retired is not None else None), restored.version

    try:
        retired, restored = db.retrying(change)
    except queries.NotFound as exc:
        print(f"deepfake-detector: cannot roll back: {exc}", file=sys.stderr)
        return EXIT_ERROR
    suffix = f" ({retired} retired)" if retired is not None else ""
    out.write(f"rolled back: {restored} is the champion again{suffix}\n")
    return 0


def list_models(db: Database, settings: Settings, out: TextIO) -> int:
    """Print the bundled model, what is in service, and the registry."""
    with db.session() as session:
        versions = queries.list_model_versions(session)
    out.write(describe_bundle(_bundled_dir()) + "\n")
    champion = next((v for v in versions if v.status == ModelStatus.CHAMPION), None)
    pinned = settings.detector.model
    if pinned != "default":
        out.write(f"in service: {pinned} (pinned by [detector] model)\n")
    elif champion is None:
        out.write("in service: the bundled model (no champion registered)\n")
    else:
        out.write(f"in service: {champion.version} (champion)\n")
    if not versions:
        out.write("no registered model versions\n")
        return 0
    out.write("\nregistered model versions (* = champion):\n")
    write_versions(versions, out)
    return 0


def _bundled_dir() -> Path | None:
    """detector/bundled/, or None while the detector package cannot provide it."""
    try:
        from detector import bundle
    except ImportError:
        return None
    return bundle.bundled_model_dir()


def describe_bundle(bundle_dir: Path | None) -> str:
    """One line about the model shipped with the package (or why there is none)."""
    if bundle_dir is None or not bundle_dir.is_dir():
        return f"bundled model: absent ({bundle_dir or 'detector.bundle unavailable'})"
    from detector import bundle

    try:
        meta = bundle.read_meta(bundle_dir)
    except FileNotFoundError:
        return f"bundled model: absent (no model.json in {bundle_dir})"
    except (OSError, ValueError) as exc:
        return f"bundled model: unreadable ({exc})"
    return (
        f"bundled model: {meta.version} (arch {meta.arch}, input {meta.input_size} px, "
        f"threshold {meta.threshold:.3f}) in {bundle_dir}"
    )


def write_versions(versions: Sequence[ModelVersion], out: TextIO) -> None:
    """Aligned table of versions; the champion's line starts with '*'."""
    rows = [
        [
            f"{'*' if v.status == ModelStatus.CHAMPION else ' '} {v.version}",
            v.status,
            v.arch,
            v.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            _metric(v.metrics, "accuracy"),
            _metric(v.metrics, "roc_auc"),
        ]
        for v in versions
    ]
    columns = [f"  {LIST_COLUMNS[0].upper()}", *(c.upper() for c in LIST_COLUMNS[1:])]
    terminal.write_table(out, columns, rows)


def _metric(metrics: dict[str, Any], key: str) -> str:
    """A headline metric: top level, else under "test" (training may nest per split)."""
    value = metrics.get(key)
    if value is None and isinstance(metrics.get("test"), dict):
        value = metrics["test"].get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4f}"
    return "-"
