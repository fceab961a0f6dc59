"""Training progress for people: epochs and steps as a rich progress bar on a terminal's stderr,
and one log line per epoch, so stdout stays free for the command's own output."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import keras
from rich.console import Console
from rich.progress import Progress, TaskID

from training.bars import bar_columns, is_terminal

logger = logging.getLogger(__name__)


class EpochProgress(keras.callbacks.Callback):
    """A bar over the epochs and one over the current epoch's steps (terminal only), and an
    INFO line per epoch with its losses, accuracies and speed."""

    def __init__(self, epochs: int, steps: int, *, err: TextIO | None = None) -> None:
        super().__init__()
        self._epochs = epochs
        self._steps = steps
        err = err if err is not None else sys.stderr
        self._progress: Progress | None = None
        if is_terminal(err):
            self._progress = Progress(*bar_columns(), console=Console(file=err), transient=True)
        self._epoch_task: TaskID | None = None
        self._step_task: TaskID | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Show the bars."""
        if self._progress is not None:
            self._progress.start()
            self._epoch_task = self._progress.add_task("epochs", total=self._epochs)
            self._step_task = self._progress.add_task("steps", total=self._steps)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Reset the step bar."""
        if self._progress is not None and self._step_task is not None:
            self._progress.reset(self._step_task, total=self._steps)
            self._progress.update(self._step_task, description=f"epoch {epoch + 1}")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Advance the step bar, showing the running loss."""
        if self._progress is not None and self._step_task is not None:
            loss = (logs or {}).get("loss")
            text = f"loss {loss:.4f}" if isinstance(loss, int | float) else "steps"
            self._progress.update(self._step_task, completed=batch + 1, description=text)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Advance the epoch bar and log the epoch's figures."""
        logs = logs or {}
        shown = ("loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "images_per_second")
        figures = ", ".join(
            f"{k} {logs[k]:.4g}" for k in shown if isinstance(logs.get(k), int | float)
        )
        logger.info("epoch %d/%d: %s", epoch + 1, self._epochs, figures)
        if self._progress is not None and self._epoch_task is not None:
            self._progress.update(self._epoch_task, completed=epoch + 1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Remove the bars."""
        if self._progress is not None:
            self._progress.stop()
