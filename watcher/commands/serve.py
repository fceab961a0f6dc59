"""`deepfake-detector serve [--once]`: the daemon that screens everything dropped in the inboxes."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from detector.errors import ModelLoadError
from detector.labels import Label
from storage.db import Database, sqlite_path
from watcher import invocation
from watcher.api import ApiConfigError
from watcher.daemon import Daemon
from watcher.disposition import REJECTED_DIR
from watcher.models_watch import open_initial_model
from watcher.settings import Settings

logger = logging.getLogger(__name__)

# [api] settings that would expose the service without a token.
EXIT_UNSAFE = 2

EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `serve` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="watch the inbox folders and screen every image dropped in",
        description=(
            "Run the daemon: watch the inbox folders, screen each complete file, store the "
            "verdict and sort the file into the output folder. SIGINT/SIGTERM stop it cleanly."
        ),
    )
    parser.add_argument(
        "--once", action="store_true", help="screen what is in the inboxes now, then exit"
    )
    parser.set_defaults(func=run)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (main thread only) instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; finishing the batch in flight", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def banner(daemon: Daemon, settings: Settings) -> str:
    """Where to drop files and how to look at the results."""
    w = settings.watcher
    active = daemon.pipeline.slot.active
    kinds = daemon.watches.kinds if daemon.watches is not None else {}
    lines = ["deepfake-detector is screening images dropped into:"]
    lines += [f"  {root}  ({kinds.get(root, 'scan once')})" for root in daemon.roots]
    if w.on_verdict == "move":
        folders = ",".join((*(label.value for label in Label), REJECTED_DIR))
        lines.append(f"Screened files are sorted into {w.output}/{{{folders}}}/.")
    else:
        lines.append("Screened files stay where they are (on_verdict = keep).")
    lines.append(
        f"Model: {active.classifier.version} ({active.choice.source}, "
        f"{active.classifier.backend}) from {active.choice.bundle_dir}"
    )
    if daemon.api is not None:
        lines.append(f"Pictures can also be posted to {daemon.api.address}/v1/screen, or dropped")
        lines.append(f"on the page {daemon.api.address}/ ([api] listen).")
    lines.append(f"Results: {invocation.command(settings.source)} verdicts")
    db_file = sqlite_path(settings.storage.url)
    if db_file is not None and shutil.which("sqlite3") is not None:  # printed only if it runs
        lines.append(
            f'     or: sqlite3 {db_file} "SELECT created_at, label, score, path FROM verdicts '
            'ORDER BY created_at DESC LIMIT 20"'
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daemon until stopped (or, with --once, until the inboxes are screened)."""
    try:
        with Database.open(settings.storage) as db:
            return _serve(args, settings, db)
    except ModelLoadError as exc:
        print(f"deepfake-detector serve: no usable model: {exc}", file=sys.stderr)
    except ApiConfigError as exc:
        print(f"deepfake-detector serve: refusing to start: {exc}", file=sys.stderr)
        return EXIT_UNSAFE
    except (OSError, SQLAlchemyError) as exc:
        logger.exception("serve failed")
        print(f"deepfake-detector serve: failed: {exc}", file=sys.stderr)
    return EXIT_FAILED


def _serve(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    active = open_initial_model(settings, db)
    daemon = Daemon(settings, db, active, once=args.once)
    print(banner(daemon, settings), flush=True)
    with stop_on_signals(daemon.stop_event):
        return daemon.run()
