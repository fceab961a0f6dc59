"""The batcher: a model outage delays screening and never rejects; a batch waits for pictures
still on their way, and only for them."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.imageio import LoadLimits
from tests.conftest import BRIGHT, DARK, ImageFactory
from watcher.batcher import Batcher

from .conftest import Deployment, running_daemon, wait_until


class FlakyModel:
    """Wraps a classifier's logits function; fails every call while `down` is set."""

    def __init__(self, healthy: Any) -> None:
        self.healthy = healthy
        self.down = threading.Event()
        self.failures = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.down.is_set():
            self.failures += 1
            raise RuntimeError("mmap of model.tflite failed")
        return np.asarray(self.healthy(batch))


def test_a_model_outage_delays_screening_and_rejects_nothing(
    deployment: Deployment, image_factory: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = deployment.write_config(retry_max_s=0.2)
    with running_daemon(settings) as daemon:
        classifier = daemon.pipeline.slot.active.classifier
        flaky = FlakyModel(classifier._logits_fn)
        monkeypatch.setattr(classifier, "_logits_fn", flaky)
        flaky.down.set()
        for n in range(5):
            image_factory(deployment.inbox / f"f{n}.jpg", color=BRIGHT, seed=n, noise=4.0)
        # Probe included, the model has failed on several tries of the waiting batch.
        wait_until(lambda: flaky.failures >= 6, what="the batch to be tried again")
        assert deployment.verdicts() == []
        flaky.down.clear()
        wait_until(lambda: len(deployment.verdicts()) == 5, what="5 verdicts")
        wait_until(lambda: len(deployment.sorted_files()["ai"]) == 5, what="5 files sorted")
    assert {v.status for v in deployment.verdicts()} == {"classified"}
    assert deployment.sorted_files()["rejected"] == []


def test_an_image_the_model_cannot_take_is_rejected_alone(
    deployment: Deployment, image_factory: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model passes its probe, so the failure is the image's: only that file is rejected."""
    settings = deployment.write_config(on_verdict="keep", max_wait_ms=500)
    with running_daemon(settings) as daemon:
        classifier = daemon.pipeline.slot.active.classifier
        healthy = classifier._logits_fn

        def fails_on_dark(batch: np.ndarray) -> np.ndarray:
            means = batch.reshape(len(batch), -1).mean(axis=1)
            if ((means > 5) & (means < 100)).any():  # dark.jpg, not the probe's black image
                raise RuntimeError("kernel failed")
            return np.asarray(healthy(batch))

        monkeypatch.setattr(classifier, "_logits_fn", fails_on_dark)
        image_factory(deployment.inbox / "bright.jpg", color=BRIGHT, seed=1, noise=4.0)
        image_factory(deployment.inbox / "dark.jpg", color=DARK, seed=2, noise=4.0)
        wait_until(lambda: len(deployment.verdicts()) == 2, what="2 verdicts")
    status = {Path(v.path).name: (v.status, v.reason) for v in deployment.verdicts()}
    assert status["bright.jpg"] == ("classified", None)
    assert status["dark.jpg"][0] == "rejected"
    assert "kernel failed" in (status["dark.jpg"][1] or "")


def _batcher(decoded: queue.Queue[Any], upstream_idle: Any, max_wait_s: float) -> Batcher:
    """A batcher whose collect() can be driven alone (nothing else of it runs)."""
    return Batcher(
        db=None,  # type: ignore[arg-type]
        decoded=decoded,
        tasks=queue.Queue(),
        slot=None,  # type: ignore[arg-type]
        batch_size=4,
        max_wait_s=max_wait_s,
        limits=LoadLimits(),
        writer=threading.Thread(),
        upstream_idle=upstream_idle,
    )


def test_a_batch_goes_at_once_when_nothing_more_is_on_its_way() -> None:
    decoded: queue.Queue[Any] = queue.Queue()
    decoded.put("first")
    started = time.monotonic()
    assert _batcher(decoded, lambda: True, max_wait_s=30.0).collect() == ["first"]
    assert time.monotonic() - started < 10.0  # not the 30 s window


def test_a_batch_waits_for_pictures_still_being_decoded() -> None:
    decoded: queue.Queue[Any] = queue.Queue()
    decoded.put("first")
    busy = threading.Event()
    busy.set()

    def decoder_finishes() -> None:
        time.sleep(0.3)
        decoded.put("second")
        busy.clear()

    threading.Thread(target=decoder_finishes, daemon=True).start()
    batch = _batcher(decoded, lambda: not busy.is_set(), max_wait_s=30.0).collect()
    assert batch == ["first", "second"]


def test_one_upload_on_an_idle_daemon_does_not_wait_out_the_batch_window(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    settings = deployment.write_config(max_wait_ms=60_000)
    with running_daemon(settings):
        image_factory(deployment.inbox / "one.jpg", color=BRIGHT, seed=1, noise=4.0)
        wait_until(lambda: len(deployment.verdicts()) == 1, timeout=45, what="its verdict")


def test_a_batchs_pictures_are_freed_when_it_is_done_without_the_cycle_collector(
    deployment: Deployment, image_factory: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retry controller made per batch, with the batch in its closures, sat in a reference
    # cycle: every batch's views stayed alive until the cyclic collector ran, and the peak
    # memory grew with the backlog. With the collector off, every batch but the one in hand
    # must be freed by reference counting alone.
    import gc
    import weakref

    batches: list[list[weakref.ref[np.ndarray]]] = []
    screen = Batcher.screen

    def recording(self: Batcher, items: list[Any], active: Any) -> Any:
        batches.append([weakref.ref(item.views.whole) for item in items])
        return screen(self, items, active)

    monkeypatch.setattr(Batcher, "screen", recording)
    settings = deployment.write_config(on_verdict="keep")
    gc.disable()
    try:
        with running_daemon(settings):
            for n in range(24):
                image_factory(deployment.inbox / f"p{n}.jpg", color=BRIGHT, seed=n, noise=4.0)
                time.sleep(0.02)
            wait_until(lambda: len(deployment.verdicts()) == 24, what="24 verdicts")
            assert len(batches) >= 2
            alive = [sum(ref() is not None for ref in batch) for batch in batches[:-1]]
            assert alive == [0] * len(alive)
    finally:
        gc.enable()
