"""What the commands show people in a terminal: tables and progress bars, drawn with rich.

Machine-readable output stays byte-stable: a table written to a pipe or file is plain text
(columns two spaces apart, no colour, no trailing spaces, never wrapped), and progress is drawn
only on stderr and only when stderr is a terminal. While a bar is drawn, log records and lines
for stdout are printed above it instead of through it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Final, TextIO

from rich import box
from rich.console import Console
from rich.progress import (
    Progress,
    TaskID,
)
from rich.table import Table
from rich.text import Text

from training.bars import bar_columns, is_terminal

__all__ = ["Bar", "is_terminal", "progress_bar", "render_table", "write_table"]

PLAIN_WIDTH: Final[int] = 1_000_000  # a pipe is never wrapped


def render_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, terminal: bool, width: int = 0
) -> str:
    """The table as text: boxed with a bold header for a terminal, else plain aligned columns."""
    table = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold" if terminal else "",
    )
    for name in columns:
        table.add_column(name, no_wrap=not terminal, overflow="fold" if terminal else "ignore")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width or (120 if terminal else PLAIN_WIDTH),
        force_terminal=terminal,
        color_system="standard" if terminal else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )
    console.print(table)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def write_table(out: TextIO, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a table to `out`, styled only when `out` is a terminal."""
    terminal = is_terminal(out)
    width = 0
    if terminal:
        width = Console(file=out).width
    out.write(render_table(columns, rows, terminal=terminal, width=width))
    out.flush()


class Bar:
    """A progress bar on stderr (a no-op when stderr is not a terminal)."""

    def __init__(self, progress: Progress | None, task: TaskID | None, out: TextIO) -> None:
        self._progress = progress
        self._task = task
        self._out = out

    @property
    def active(self) -> bool:
        """Whether a bar is being drawn."""
        return self._progress is not None

    def update(
        self, *, completed: int | None = None, total: int | None = None, text: str | None = None
    ) -> None:
        """Move the bar; `total` None keeps the current one (unknown = a pulsing bar)."""
        if self._progress is None or self._task is None:
            return
        fields: dict[str, object] = {}
        if text is not None:
            fields["description"] = text
        self._progress.update(self._task, completed=completed, total=total, **fields)  # type: ignore[arg-type]

    def advance(self, steps: int = 1) -> None:
        """Count `steps` more done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def line(self, text: str) -> None:
        """Write one output line to `out`; above the bar when both share the terminal."""
        if self._progress is not None and is_terminal(self._out):
            self._progress.console.print(Text(text), soft_wrap=True)
            return
        self._out.write(text + "\n")
        self._out.flush()


@contextlib.contextmanager
def progress_bar(
    description: str,
    total: int | None = None,
    *,
    err: TextIO | None = None,
    out: TextIO | None = None,
) -> Iterator[Bar]:
    """A transient progress bar on `err` (stderr) while the block runs, when it is a terminal."""
    err = err if err is not None else sys.stderr
    out = out if out is not None else sys.stdout
    if not is_terminal(err):
        yield Bar(None, None, out)
        return
    progress = Progress(
        *bar_columns(),
        console=Console(file=err, stderr=err is sys.stderr),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress, _logs_above(progress):
        task = progress.add_task(description, total=total)
        yield Bar(progress, task, out)


@contextlib.contextmanager
def _logs_above(progress: Progress) -> Iterator[None]:
    """Log records go through the bar's console while it is drawn, so they never cut it."""
    target = progress.console.file
    swapped: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
    proxy = _ConsoleLines(progress.console)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (target, sys.stderr):
            swapped.append((handler, handler.stream))
            handler.setStream(proxy)
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)


class _ConsoleLines(io.TextIOBase):
    """A text stream that prints whole lines through a rich console (above its live bar)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._pending = ""

    def write(self, s: str) -> int:
        """Buffer until a newline, then print the complete lines."""
        self._pending += s
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._console.print(Text(line), soft_wrap=True)
        return len(s)

    def flush(self) -> None:
        """Nothing is held back but a partial line."""
