"""Training: the one entry. It runs the from-scratch or the pretrained fit, then one shared tail:
export (LiteRT and Keras weight formats, each kept only where accuracy holds), the training
record, the model contract check, and publication of the bundle.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from detector.bundle import ModelMeta, new_version, write_meta
from training import litert as litert_export
from training import pipeline
from training.datasets import DatasetSplits, dataset_info
from training.publish import environment, publish_vetted
from training.settings import FitSettings, TrainResult

logger = logging.getLogger(__name__)

__all__ = ["FitSettings", "TrainResult", "train"]


def train(
    splits: DatasetSplits,
    settings: FitSettings,
    *,
    dest: Path,
    run_dir: Path,
    version: str | None = None,
    cache_dir: Path | None = None,
    command: str = "",
    export_litert: bool = True,
    overwrite: bool = False,
    private: bool = True,
    verbose: int = 1,
    init_bundle: Path | None = None,
) -> TrainResult:
    """Train, calibrate and evaluate a model, then write its bundle to `dest`.

    A pretrained architecture starts from `init_bundle`'s backbone when given.
    """
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings.pretrained:
        from training.pretrained.run import fit_pretrained

        fitted = fit_pretrained(splits, settings, cache_dir=cache_dir, init_bundle=init_bundle)
    else:
        from training.scratch import fit_scratch

        fitted = fit_scratch(
            splits, settings, run_dir=run_dir, cache_dir=cache_dir, verbose=verbose
        )
    litert, saved, keras_weights = None, fitted.model, {"weights": litert_export.FLOAT32}
    if export_litert:
        litert, saved, keras_weights = litert_export.choose_exports(
            fitted.model, settings.image_size, fitted.judge, half=fitted.half
        )
    info: dict[str, Any] = {
        "command": command,
        "config": settings.to_dict(),
        "dataset": dataset_info(splits),
        **fitted.info,
        "class_weights": {
            str(k): v for k, v in pipeline.class_weights(fitted.train_labels).items()
        },
        **({"litert": litert.info} if litert is not None else {}),
        "keras_weights": keras_weights,
        **environment(),
    }
    meta = dataclasses.replace(
        fitted.meta, version=version or new_version(settings.arch), training=info
    )
    # Wall time up to the bundle write (the bundle's own checks are not training).
    info["wall_seconds"] = time.perf_counter() - started
    bundle_dir = publish_vetted(saved, meta, dest, litert, overwrite=overwrite, private=private)
    if settings.invariance_per_source > 0 and splits.test:
        meta = _with_invariance(meta, bundle_dir, splits, settings)
    return TrainResult(
        bundle_dir=bundle_dir,
        meta=meta,
        history=info.get("history", {}),
        run_dir=run_dir,
        best_epoch=int(info.get("best_epoch", 1)),
        stopped_early=bool(info.get("stopped_early", False)),
        train_seconds=float(info["train_seconds"]),
        images_per_second=float(info["images_per_second"]),
    )


def _with_invariance(
    meta: ModelMeta, bundle_dir: Path, splits: DatasetSplits, settings: FitSettings
) -> ModelMeta:
    """The published model measured through the processing chains (as it serves, LiteRT
    included), the figures added to its model.json."""
    from detector.classifier import Classifier
    from training.evaluate import invariance

    started = time.perf_counter()
    result = invariance(
        Classifier.load(bundle_dir), splits.test, settings.invariance_per_source, settings.seed
    )
    result["seconds"] = round(time.perf_counter() - started, 1)
    metrics = {**meta.metrics, "test": {**meta.metrics.get("test", {}), "invariance": result}}
    meta = dataclasses.replace(meta, metrics=metrics)
    write_meta(meta, bundle_dir)
    return meta
