"""The `deepfake-detector` command line: parses arguments and hands off to one command module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from watcher.settings import ConfigError, load_settings

logger = logging.getLogger(__name__)

# Each module defines `register(subparsers)`, which adds its sub-command(s) and sets
# `func(args, settings) -> int` as the parser default.
COMMAND_MODULES = (
    "watcher.commands.scan",
    "watcher.commands.serve",
    "watcher.commands.verdicts",
    "watcher.commands.models",
    "watcher.commands.train",
    "watcher.commands.report",
    "watcher.commands.schedule",
    "watcher.commands.label",
)

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command that is installed."""
    parser = argparse.ArgumentParser(
        prog="deepfake-detector",
        description="Screen face images: real photograph or AI-generated.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $DEEPFAKE_DETECTOR_CONFIG, else ./config.toml, else built-in)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module, not a missing command
                raise
            continue
        module.register(sub)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr; stdout is reserved for command output."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose < 2:
        for noisy in ("watchdog", "alembic", "apscheduler", "PIL", "matplotlib", "h5py"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"deepfake-detector: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
