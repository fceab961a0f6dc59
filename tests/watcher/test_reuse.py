"""Content a model already scored in an earlier run reuses its verdict and skips the model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import BRIGHT, ImageFactory

from .conftest import Deployment, running_daemon, wait_until


def test_content_scored_in_an_earlier_run_reuses_its_verdict_without_the_model(
    deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = image_factory(tmp_path / "face.jpg", color=BRIGHT, noise=3.0)
    settings = deployment.write_config(on_verdict="keep")
    with running_daemon(settings):
        shutil.copy(source, deployment.inbox / "first.jpg")
        wait_until(lambda: len(deployment.verdicts()) == 1, what="the first verdict")
    # The writer's logger by name: an in-process `scan` earlier in the run quiets it.
    caplog.set_level(logging.INFO, logger="watcher.writer")
    with running_daemon(settings) as daemon:
        classifier = daemon.pipeline.slot.active.classifier
        healthy = classifier._logits_fn
        calls: list[int] = []

        def counted(batch: np.ndarray) -> Any:
            calls.append(len(batch))
            return healthy(batch)

        monkeypatch.setattr(classifier, "_logits_fn", counted)
        shutil.copy(source, deployment.inbox / "again.jpg")  # same bytes, new file
        image_factory(deployment.inbox / "new.jpg", color=BRIGHT, noise=3.0, seed=9)
        wait_until(lambda: len(deployment.verdicts()) == 3, what="two more verdicts")
    assert sum(calls) == 1  # new.jpg only
    assert "again.jpg: ai" in caplog.text and "verdict reused" in caplog.text
    verdicts = {Path(v.path).name: (v.sha256, v.score) for v in deployment.verdicts()}
    assert verdicts["again.jpg"] == verdicts["first.jpg"]
    assert deployment.prediction_count() == 2
