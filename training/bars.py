"""The look of every progress bar (training's and the commands'), without importing Keras, so
the screening commands can share it and still start fast."""

from __future__ import annotations

from typing import TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def is_terminal(stream: TextIO) -> bool:
    """True when the stream is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


def bar_columns() -> tuple[ProgressColumn, ...]:
    """Spinner, description, bar, done/total, elapsed and remaining time."""
    return (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
