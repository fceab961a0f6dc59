"""The `deepfake-detector` command line: parses arguments and hands off to one command module."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from watcher.settings import ConfigError, load_settings

logger = logging.getLogger(__name__)

# TensorFlow's C++ start-up chatter would bury the one line per file the CLI prints.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Each module defines `register(subparsers)`, which adds its sub-command(s) and sets
# `func(args, settings) -> int` as the parser default. Keyed by sub-command name so that a run
# imports only its own module: `report` pulls in matplotlib and scikit-learn, `train` Keras, and
# `scan` of one image must not pay for those.
COMMANDS: dict[str, str] = {
    "scan": "watcher.commands.scan",
    "serve": "watcher.commands.serve",
    "verdicts": "watcher.commands.verdicts",
    "models": "watcher.commands.models",
    "train": "watcher.commands.train",
    "evaluate": "watcher.commands.train",
    "report": "watcher.commands.report",
    "schedule": "watcher.commands.schedule",
    "retrain": "watcher.commands.schedule",
    "label": "watcher.commands.label",
    "db": "watcher.commands.db",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

EXIT_CONFIG = 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every sub-command, or only the module that provides `command`."""
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
    modules = (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def requested_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in argv (the first word that is not a global option), if any."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


# Commands a person runs for their answer: what they print is the output, and routine progress
# (database migrated, model loaded) is only logged with -v.
ANSWERING_COMMANDS = frozenset({"scan", "verdicts", "models", "label", "schedule", "db"})


def configure_logging(verbose: int, quiet: bool, command: str | None = None) -> None:
    """Log to stderr; stdout is reserved for command output."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if command in ANSWERING_COMMANDS and not verbose:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose < 2:
        for noisy in ("watchdog", "alembic", "apscheduler", "PIL", "matplotlib", "h5py"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _build_parser_quickly(command: str | None) -> argparse.ArgumentParser:
    """build_parser() with the cyclic garbage collector paused while it imports the command.

    Importing SQLAlchemy, numpy and Pillow leaves some 70,000 long-lived objects and hardly any
    garbage, yet triggers about 200 collections: some 70 ms of a one-image `scan` (measured).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return build_parser(command)
    finally:
        if was_enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script (argv None: this process runs nothing else)."""
    whole_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser_quickly(requested_command(argv))
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet, requested_command(argv))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"deepfake-detector: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    finally:
        if whole_process:
            # The interpreter's final collections walk every object the imports made: about
            # 0.2 s of a one-image `scan` (measured). Frozen objects are skipped; the process
            # is ending, the command closed its database and joined its threads, and output
            # is flushed at exit as usual.
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
