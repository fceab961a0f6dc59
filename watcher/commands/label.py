"""`deepfake-detector label PATH|SHA256 real|ai [--note TEXT]`: record a human correction.

Labels join the training data of the next retraining (never its held-out data), and the
operations report shows how often the model agreed with them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Final

from storage.db import Database
from storage.queries import NotFound
from watcher.labelling import LabelTargetError, record_label
from watcher.settings import Settings

logger = logging.getLogger(__name__)

EXIT_NOT_FOUND: Final[int] = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `label` sub-command."""
    parser = subparsers.add_parser(
        "label",
        help="record a human label (correction) for an image",
        description=(
            "Record what an image really is. The image is named by a file path (read and "
            "hashed; a screened file that was moved can also be named by its old or new path) "
            "or by its SHA-256. Labelled images join the next retraining's training data."
        ),
    )
    parser.add_argument("image", metavar="PATH|SHA256", help="image file or its SHA-256 (hex)")
    parser.add_argument("label", choices=("real", "ai"), help="what the image really is")
    parser.add_argument("--note", default="", metavar="TEXT", help="why (free text)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Record the label and say how it compares with the model's verdict."""
    db = Database.open(settings.storage)
    try:
        message = db.retrying(
            lambda s: record_label(s, args.image, args.label, args.note, settings)
        )
    except (LabelTargetError, NotFound) as exc:
        print(f"deepfake-detector label: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    finally:
        db.close()
    print(message)
    return 0
