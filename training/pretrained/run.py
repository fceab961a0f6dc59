"""The pretrained run: every picture rendered at several qualities, its views through the frozen
backbone, a logistic-regression head, the picture rule, calibration and the measurements.

Steps (docs/default-model.md says what each costs):
1. Features of every view (whole, native patch, face) of every picture, plain and through
   random processing chains, plus self-blended real faces (training.pretrained.features).
2. The head on the training rows, weighted so that neither class nor image quality dominates.
3. The picture rule and calibration on the validation split: temperature, threshold, and an
   uncertain band of at most 5 % of the pictures.
4. Metrics per split, per source and per view; image quality per source and how much of it
   still tells the class; optionally the leave-one-source-out table.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import numpy as np

from detector.bundle import KERAS_FILE, ModelMeta
from detector.faces import FaceFinder, FaceOptions
from detector.imageio import LoadLimits
from detector.scoring import CombineRule
from detector.views import PATCH, Views, ViewSpec
from training import calibration, evaluate, fairness, pipeline, quality
from training.datasets import SPLITS, DatasetSplits, fingerprint
from training.pretrained import combine, features, finetune, loso
from training.pretrained.data import SplitData
from training.pretrained.head import Head, fit_head, row_weights
from training.pretrained.network import (
    BACKBONE_NAME,
    build_mobilenet_ms,
    float16_copy,
    set_head,
)
from training.settings import FitSettings, Fitted

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


def split_data(
    splits: DatasetSplits,
    settings: FitSettings,
    extract: features.Extractor,
    cache_dir: Path | None,
) -> dict[str, SplitData]:
    """Pictures and rows of every split, before any hold-out (rows are shared between runs
    that hold out different sources). Every view kind is computed, whatever the settings use."""
    spec, passes = render_settings(settings)
    out: dict[str, SplitData] = {}
    for name in SPLITS:
        samples = splits.split(name)
        numbers = passes.numbers() if name == "train" else [features.PLAIN]
        parts = [features.pass_rows(samples, k, spec, passes, extract, cache_dir) for k in numbers]
        out[name] = SplitData.of(samples, features.Rows.concat(parts))
    return out


def render_settings(settings: FitSettings) -> tuple[ViewSpec, features.Passes]:
    """How pictures are rendered and cut into views for features (every view kind)."""
    spec = ViewSpec(settings.image_size, FaceFinder(FaceOptions()), patch=True)
    passes = features.Passes(
        degraded=settings.feature_passes - 1,
        self_blend=True,
        chain=settings.degrade,
        seed=settings.seed,
    )
    return spec, passes


class Backbone:
    """The rows of every split and, when the settings fine-tune, the maps and starting weights
    of the upper blocks: what each fold (and the final fit) tunes from."""

    def __init__(
        self,
        splits: DatasetSplits,
        settings: FitSettings,
        model: keras.Model,
        cache_dir: Path,
    ) -> None:
        self.settings, self.model = settings, model
        # The frozen backbone's feature extractor (a LiteRT export: tens of seconds to make).
        self.extract = extract = features.Extractor(model, settings.image_size)
        self.every = split_data(splits, settings, extract, cache_dir)
        self.start = finetune.backbone_weights(model)
        self.maps: dict[str, finetune.MapStore] | None = None
        if settings.fine_tune_epochs:
            render = render_settings(settings)
            self.maps = finetune.split_maps(splits, self.every, render, model, extract, cache_dir)
            error = finetune.check_maps(model, self.start, self.every["validate"],
                                        self.maps["validate"])  # fmt: skip
            logger.info("maps reproduce the cached features (median error %.4f)", error)

    def tuned(self, leave_out: list[str]) -> tuple[dict[str, SplitData], finetune.Tuned | None]:
        """Every split's rows as a backbone tuned without `leave_out` sees them (the cached
        rows, and no weights, for a frozen backbone)."""
        if self.maps is None:
            return self.every, None
        first = fit_on(self.every["train"].without(leave_out), self.settings)
        return finetune.tune(
            self.every, self.maps, first, leave_out, self.settings, self.model, self.start
        )

    def fold(self, source: str) -> tuple[dict[str, SplitData], Head]:
        """One leave-one-source-out fold (loso.Fold)."""
        data, _ = self.tuned([source])
        return data, fit_on(data["train"].without([source]), self.settings)


def fit_on(train: SplitData, settings: FitSettings) -> Head:
    """The head fitted on a split's rows, with the settings' views, self-blends and weights."""
    rows = train.fitting_rows(settings.views, settings.self_blend)
    weights = row_weights(rows, settings.balance_quality)
    return fit_head(rows.feats, rows.labels, weights, settings.head_c, settings.seed)


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
    model = initial_model(settings, init_bundle)
    cache = cache_dir or pipeline.default_cache_dir()
    backbone = Backbone(splits.before_hold_out or splits, settings, model, cache)
    tuned_every, tuned = backbone.tuned(list(splits.held_out))
    extract = backbone.extract
    if tuned is not None:
        finetune.apply(model, tuned)
        extract = features.Extractor(model, settings.image_size)  # the tuned backbone's
    data = {
        name: d.without(splits.held_out) if name != "test" else d for name, d in tuned_every.items()
    }
    features_seconds = time.perf_counter() - started
    t0 = time.perf_counter()
    head = fit_on(data["train"], settings)
    set_head(model, head.mean, head.variance, head.coef, head.bias)
    spec = ViewSpec(settings.image_size, FaceFinder(FaceOptions()), patch=PATCH in settings.views)
    validation = _views(data["validate"], spec)
    _check_head(model, head, extract, np.stack([v.whole for v in validation[:4]]))
    fit_seconds = time.perf_counter() - t0
    meta, info = _calibrate_and_measure(head, data, settings)
    if settings.leave_one_source_out:
        info["leave_one_source_out"] = loso.table(backbone.every, settings, backbone.fold)
    rows = data["train"].fitting_rows(settings.views, settings.self_blend)
    info.update(
        quality=_quality_report(data, rows, settings),
        passes=features.describe(
            features.Passes(settings.feature_passes - 1, settings.self_blend, settings.degrade)
        ),
        fine_tune=finetune.describe(settings) if tuned is not None else None,
        features_seconds=features_seconds,
        train_seconds=fit_seconds,
        images_per_second=len(rows) / max(features_seconds + fit_seconds, 1e-9),
        feature_rows=len(rows),
    )
    judge = combine.picture_judge(
        validation,
        data["validate"].labels,
        data["validate"].sources,
        CombineRule.from_meta(meta.combine, meta.temperature),
        meta.threshold,
    )
    return Fitted(
        model=model,
        meta=meta,
        info=info,
        train_labels=data["train"].labels,
        judge=judge,
        half=lambda m: float16_copy(m, settings.image_size),
    )


def _views(split: SplitData, spec: ViewSpec) -> list[Views]:
    """Every picture of a split as serving cuts it (two threads)."""
    limits = LoadLimits()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda s: spec.decode(s.path.read_bytes(), limits), split.samples))


def _check_head(
    model: keras.Model, head: Head, extract: features.Extractor, probe: np.ndarray
) -> None:
    """The saved model must give the logits the head was fitted for."""
    got = np.asarray(model(probe.astype(np.float32), training=False)).reshape(-1)
    want = head.logits(extract(probe))
    if not np.allclose(got, want, atol=1e-2 * max(1.0, float(np.abs(want).max()))):
        raise RuntimeError(f"model logits {got} differ from the fitted head's {want}")


def _calibrate_and_measure(
    head: Head, data: dict[str, SplitData], settings: FitSettings
) -> tuple[ModelMeta, dict[str, Any]]:
    logits = {
        name: combine.picture_logits(head, d.rows, len(d))
        for name, d in data.items()
        if name != "train"
    }
    val, val_y = logits["validate"], data["validate"].labels
    views = [val.whole] + [v[~np.isnan(v)] for v in (val.patch, val.face)]
    labels = [val_y] + [val_y[~np.isnan(v)] for v in (val.patch, val.face)]
    temperature = calibration.fit_temperature(np.concatenate(views), np.concatenate(labels))
    rule = combine.fit_rule(val, val_y, settings.seed, settings.face_decides)
    val_probs = combine.picture_probs(rule, val)
    threshold = calibration.choose_threshold(val_probs, val_y)
    precision = calibration.UNCERTAIN_PRECISION
    band = calibration.uncertain_band(
        val_probs, val_y, threshold, precision, max_share=calibration.UNCERTAIN_MAX_SHARE
    )
    metrics: dict[str, Any] = {}
    probs = {name: combine.picture_probs(rule, split) for name, split in logits.items()}
    for name, split in logits.items():
        d = data[name]
        metrics[name] = evaluate.compute_metrics(d.labels, probs[name], d.sources, threshold, band)
        metrics[name]["views"] = combine.view_metrics(split, d.labels, d.sources, temperature)
    pool = (data["validate"].samples, probs["validate"])
    groups = fairness.false_positive_rates(data["test"].samples, probs["test"], threshold, pool)
    if groups:
        metrics["test"]["fairness"] = groups
    combined = calibration.logit(val_probs)
    calib = calibration.calibration_summary(combined, val_y, 1.0)
    calib.update(
        threshold=threshold,
        view_temperature=temperature,
        uncertain_band=list(band),
        uncertain_precision=precision,
        uncertain_max_share=calibration.UNCERTAIN_MAX_SHARE,
        validation_band=calibration.band_report(val_probs, val_y, band, threshold),
    )
    meta = ModelMeta(
        version="pending",
        arch=settings.arch,
        input_size=settings.image_size,
        threshold=threshold,
        temperature=temperature,
        data_fingerprint=fingerprint([s for d in data.values() for s in d.samples]),
        metrics=metrics,
        faces=FaceOptions().to_dict(),
        combine=rule.to_dict(),
        views=tuple(settings.views),
        uncertain_band=band,
        uncertain_precision=precision,
    )
    info: dict[str, Any] = {
        "head": {
            "kind": "logistic_regression",
            "c": settings.head_c,
            "iterations": head.iterations,
        },
        "calibration": calib,
        "combine_rule": rule.to_dict(),
    }
    return meta, info


def _quality_report(
    data: dict[str, SplitData], rows: features.Rows, settings: FitSettings
) -> dict[str, Any]:
    """Per source: size, sharpness, compression (plain pictures); per measure, how well it tells
    the class among the training rows, unweighted and as the head was fitted."""
    per_source: dict[str, Any] = {}
    for d in data.values():
        plain = (d.rows.passes == features.PLAIN) & (d.rows.kind == 0)
        facts = d.rows.quality[plain]
        sources = [d.samples[i].source for i in d.rows.index[plain]]
        for source, report in quality.per_source(facts, sources).items():
            per_source.setdefault(source, report)
    weights = row_weights(rows, settings.balance_quality)
    return {
        "per_source": per_source,
        "class_signal_unweighted": quality.class_signal(rows.quality, rows.labels),
        "class_signal_weighted": quality.class_signal(rows.quality, rows.labels, weights),
    }


def leave_one_source_out(
    splits: DatasetSplits,
    settings: FitSettings,
    *,
    cache_dir: Path | None,
    init_bundle: Path | None = None,
) -> dict[str, Any]:
    """The leave-one-source-out table of these settings, without training a bundle."""
    keras.utils.set_random_seed(settings.seed)
    model = initial_model(settings, init_bundle)
    backbone = Backbone(splits, settings, model, cache_dir or pipeline.default_cache_dir())
    result = loso.table(backbone.every, settings, backbone.fold)
    result["settings"] = settings.to_dict()
    return result
