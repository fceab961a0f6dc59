"""The pretrained run: views, frozen backbone features, the fitted head and the picture rule."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from detector.bundle import KERAS_FILE, ModelMeta
from detector.faces import FaceOptions
from training import calibration, evaluate, pipeline
from training.datasets import SPLITS, DatasetSplits, fingerprint
from training.pretrained import head as frozen
from training.pretrained.network import (
    BACKBONE_NAME,
    build_mobilenet_ms,
    copy_head,
    float16_copy,
)
from training.settings import FitSettings, Fitted
from training.viewsets import ViewSet, decode_viewsets, padding_report

logger = logging.getLogger(__name__)


def initial_model(settings: FitSettings, init_bundle: Path | None) -> keras.Model:
    """A fresh model: backbone from the champion bundle when given, else ImageNet weights."""
    if init_bundle is not None and (init_bundle / KERAS_FILE).is_file():
        try:
            return _from_bundle(settings, init_bundle)
        except Exception as exc:  # an int8 or foreign bundle: start from ImageNet instead
            logger.warning("cannot start from %s (%s); using ImageNet weights", init_bundle, exc)
    weights = settings.backbone_weights or "imagenet"
    return build_mobilenet_ms(settings.image_size, weights)


def _from_bundle(settings: FitSettings, bundle: Path) -> keras.Model:
    old = keras.saving.load_model(bundle / KERAS_FILE, compile=False, safe_mode=True)
    model = build_mobilenet_ms(settings.image_size, None)
    model.get_layer(BACKBONE_NAME).set_weights(old.get_layer(BACKBONE_NAME).get_weights())
    logger.info("backbone weights taken from the champion bundle %s", bundle)
    return model


def split_logits(head: frozen.Head, rows: frozen.Rows, n: int) -> frozen.PictureLogits:
    """Picture logits of a split from its unaugmented feature rows."""
    logits = head.logits(rows.feats) if len(rows.feats) else np.zeros(0)
    whole = np.zeros(n)
    face = np.full(n, np.nan)
    whole[rows.index[~rows.is_face]] = logits[~rows.is_face]
    face[rows.index[rows.is_face]] = logits[rows.is_face]
    return frozen.PictureLogits(whole=whole, face=face, has_face=~np.isnan(face))


def _check_head(model: keras.Model, head: frozen.Head, views: ViewSet, rows: frozen.Rows) -> None:
    """The saved model must give the logits the head was fitted for."""
    probe = views.whole[:4]
    got = np.asarray(model(probe.astype(np.float32), training=False)).reshape(-1)
    picked = [int(np.flatnonzero((rows.index == i) & ~rows.is_face)[0]) for i in range(len(probe))]
    want = head.logits(rows.feats[picked])
    if not np.allclose(got, want, atol=1e-3 * max(1.0, float(np.abs(want).max()))):
        raise RuntimeError(f"model logits {got} differ from the fitted head's {want}")


def _views_and_rows(
    splits: DatasetSplits,
    settings: FitSettings,
    extract_for: Callable[[], frozen.FeatureExtractor],
    options: FaceOptions,
    cache_dir: Path | None,
) -> tuple[dict[str, ViewSet], dict[str, frozen.Rows]]:
    """Views and feature rows of every split; sources held out are dropped after the features,
    which are computed (and cached) on the splits before the hold-out."""
    base = splits.before_hold_out or splits
    extract = extract_for()
    views: dict[str, ViewSet] = {}
    rows: dict[str, frozen.Rows] = {}
    for name in SPLITS:
        full = decode_viewsets(base.split(name), settings.image_size, options, cache_dir=cache_dir)
        passes = settings.feature_passes if name == "train" else 1
        full_rows = frozen.cached_rows(extract, full, passes, cache_dir) if len(full) else None
        keep = np.ones(len(full), bool)
        if name != "test" and splits.held_out:
            keep = ~np.isin(np.array(full.sources, dtype=object), list(splits.held_out))
        views[name] = full if keep.all() else full.subset(keep)
        if full_rows is not None:
            rows[name] = full_rows if keep.all() else full_rows.of_pictures(keep)
    return views, rows


def fit_pretrained(
    splits: DatasetSplits,
    settings: FitSettings,
    *,
    cache_dir: Path | None,
    init_bundle: Path | None = None,
) -> Fitted:
    """Fit the head and the picture rule on frozen features; calibrated and measured."""
    started = time.perf_counter()
    keras.utils.set_random_seed(settings.seed)
    options = FaceOptions()
    model = initial_model(settings, init_bundle)
    cache = cache_dir or pipeline.default_cache_dir()

    def extractor() -> frozen.FeatureExtractor:
        return frozen.FeatureExtractor(model, settings.augment, settings.seed)

    views, rows = _views_and_rows(splits, settings, extractor, options, cache)
    features_seconds = time.perf_counter() - started
    t0 = time.perf_counter()
    train, val = rows["train"], rows["validate"]
    head = frozen.fit_head(train.feats, train.labels, val.feats, val.labels, settings.seed)
    copy_head(head.model, model)
    _check_head(model, head, views["validate"], val)
    logits = {
        name: split_logits(head, r, len(views[name])) for name, r in rows.items() if name != "train"
    }
    fit_seconds = time.perf_counter() - t0
    meta, info = _calibrate_and_measure(model, head, logits, views, settings, options)
    info.update(
        features_seconds=features_seconds,
        train_seconds=fit_seconds,
        images_per_second=len(train.feats) / max(features_seconds + fit_seconds, 1e-9),
        feature_rows=len(train.feats),
    )
    return Fitted(
        model=model,
        meta=meta,
        info=info,
        train_labels=views["train"].labels,
        export_data=_whole_set(views["validate"]),
        export_threshold=0.5,
        half=lambda m: float16_copy(m, settings.image_size),
    )


def _calibrate_and_measure(
    model: keras.Model,
    head: frozen.Head,
    logits: dict[str, frozen.PictureLogits],
    views: dict[str, ViewSet],
    settings: FitSettings,
    options: FaceOptions,
) -> tuple[ModelMeta, dict[str, Any]]:
    val, val_y = logits["validate"], views["validate"].labels
    view_logits = np.concatenate([val.whole, val.face[val.has_face]])
    view_labels = np.concatenate([val_y, val_y[val.has_face]])
    temperature = calibration.fit_temperature(view_logits, view_labels)
    rule = frozen.fit_combination(val, val_y, settings.seed)
    val_probs = frozen.picture_probs(rule, val)
    threshold = calibration.choose_threshold(val_probs, val_y)
    metrics: dict[str, Any] = {}
    for name, split in logits.items():
        if name == "train":
            continue
        v = views[name]
        probs = frozen.picture_probs(rule, split)
        metrics[name] = evaluate.compute_metrics(v.labels, probs, v.sources, threshold)
        metrics[name]["views"] = frozen.view_metrics(split, v.labels, v.sources, temperature)
        metrics[name]["faces"] = padding_report(v)
    combined = rule.logits(val.whole, np.nan_to_num(val.face), val.has_face)
    calib = calibration.calibration_summary(combined, val_y, 1.0)
    precision = calibration.UNCERTAIN_PRECISION
    band = calibration.uncertain_band(val_probs, val_y, threshold, precision=precision)
    calib.update(
        threshold=threshold,
        view_temperature=temperature,
        uncertain_band=list(band),
        uncertain_precision=precision,
    )
    info: dict[str, Any] = {
        "head": {
            "epochs": head.epochs,
            "validation_log_loss": head.val_loss,
            "features": int(head.model.inputs[0].shape[-1]),
        },
        "calibration": calib,
        "combine_rule": rule.to_dict(),
    }
    meta = ModelMeta(
        version="pending",
        arch=settings.arch,
        input_size=settings.image_size,
        threshold=threshold,
        temperature=temperature,
        data_fingerprint=fingerprint(_all_samples(views)),
        metrics=metrics,
        faces=options.to_dict(),
        combine=rule.to_dict(),
        uncertain_band=band,
        uncertain_precision=precision,
    )
    return meta, info


def _all_samples(views: dict[str, ViewSet]) -> list[Any]:
    return [s for name in SPLITS for s in views[name].samples]


def _whole_set(views: ViewSet) -> pipeline.DecodedSet:
    """Whole views as a DecodedSet (what the LiteRT and int8 checks compare on)."""
    return pipeline.DecodedSet(views.whole, views.labels, views.sources, views.samples)
