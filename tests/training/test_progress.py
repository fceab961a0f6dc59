"""Training progress: a bar on a terminal's stderr, one log line per epoch, nothing on stdout."""

from __future__ import annotations

import io
import logging

import pytest

from training.progress import EpochProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(cb: EpochProgress, epochs: int = 2, steps: int = 3) -> None:
    cb.on_train_begin()
    for epoch in range(epochs):
        cb.on_epoch_begin(epoch)
        for step in range(steps):
            cb.on_train_batch_end(step, {"loss": 0.5 / (step + 1)})
        cb.on_epoch_end(epoch, {"loss": 0.3, "val_accuracy": 0.9, "images_per_second": 120.0})
    cb.on_train_end()


def test_epochs_on_a_terminal(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _Terminal()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        _run(EpochProgress(2, 3, err=err))
    assert "epochs" in err.getvalue()
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 1/2: loss 0.3, val_accuracy 0.9, images_per_second 120",
        "epoch 2/2: loss 0.3, val_accuracy 0.9, images_per_second 120",
    ]
    assert capsys.readouterr().out == ""


def test_no_bar_when_stderr_is_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    err = io.StringIO()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        _run(EpochProgress(1, 2, err=err), epochs=1, steps=2)
    assert err.getvalue() == ""
    assert len(caplog.records) == 1
