"""The from-scratch run: fit a registry CNN on decoded pictures and calibrate it on validation.

The loop is a hand-written `tf.function` step driven through Keras callbacks (progress bar,
EarlyStopping with best-weight restore, ModelCheckpoint, CSVLogger): on this 2-core CPU
`model.fit` sometimes ran epochs at half speed, while a plain compiled step held steady.
The same code path runs under MirroredStrategy when more than one GPU is visible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from detector.bundle import ModelMeta
from training import architectures, calibration, evaluate, pipeline
from training.datasets import DatasetSplits, fingerprint
from training.litert import whole_view_judge
from training.progress import EpochProgress
from training.settings import FitSettings, Fitted

logger = logging.getLogger(__name__)

MONITOR = "val_loss"


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        logger.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def ema_momentum_for(momentum: float, steps_per_epoch: int) -> float:
    """The weight-average momentum, its horizon capped at one epoch (0 = no averaging).

    With few steps per epoch (small data sets) an average over ~1/(1-m) steps would still sit
    near the initial weights when it overwrites them, and the model would never learn.
    """
    if momentum <= 0 or steps_per_epoch < 10:
        return 0.0
    return min(momentum, 1.0 - 1.0 / steps_per_epoch)


def lr_schedule(
    peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup to `peak`, then cosine decay to 1% of it over the remaining epochs."""
    warmup = min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
    decay = max(1, epochs * steps_per_epoch - warmup)
    return keras.optimizers.schedules.CosineDecay(
        peak * 0.1 if warmup else peak,
        decay_steps=decay,
        alpha=0.01,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def _train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    global_batch: int,
) -> Callable[[Any], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Compiled step: (summed weighted loss / global batch, correct count, batch size)."""

    def replica_step(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            logits = tf.reshape(model(x, training=True), [-1])
            per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.nn.compute_average_loss(
                per_example, sample_weight=w, global_batch_size=global_batch
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(logits > 0.0, y > 0.5), tf.float32))
        return loss, correct, tf.cast(tf.size(y), tf.float32)

    @tf.function
    def step(batch: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        results = strategy.run(replica_step, args=batch)
        loss, correct, count = (
            strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results
        )
        return loss, correct, count

    return step


def logits_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """A compiled inference function (no per-call model.predict overhead)."""

    @tf.function(reduce_retracing=True)
    def infer(x: tf.Tensor) -> tf.Tensor:
        return tf.reshape(model(x, training=False), [-1])

    return infer


def predict_logits(
    model: keras.Model, data: pipeline.DecodedSet, batch_size: int = 64
) -> np.ndarray:
    """Raw logits (N,) of a decoded set, in order."""
    if len(data) == 0:
        return np.zeros((0,), dtype=np.float64)
    infer = logits_function(model)
    parts = [infer(x).numpy() for x, _, _ in pipeline.eval_dataset(data, batch_size)]
    return np.concatenate(parts).astype(np.float64)


def _validation_logs(
    infer: Callable[[tf.Tensor], tf.Tensor], val_ds: tf.data.Dataset, labels: np.ndarray
) -> dict[str, float]:
    logits = np.concatenate([infer(x).numpy() for x, _, _ in val_ds]).astype(np.float64)
    probs = calibration.sigmoid(logits)
    return {
        "val_loss": calibration.nll_from_logits(logits, labels),
        "val_accuracy": float(np.mean((logits > 0.0) == (labels > 0.5))),
        "val_auc": evaluate.roc_auc(labels, probs),
    }


def _callbacks(
    model: keras.Model, settings: FitSettings, run_dir: Path, steps: int, verbose: int
) -> tuple[keras.callbacks.CallbackList, keras.callbacks.EarlyStopping]:
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    early = keras.callbacks.EarlyStopping(
        monitor=MONITOR, patience=settings.patience, restore_best_weights=True, verbose=verbose
    )
    callbacks = keras.callbacks.CallbackList(
        [
            early,
            keras.callbacks.ModelCheckpoint(str(checkpoints / "epoch-{epoch:03d}.keras")),
            keras.callbacks.ModelCheckpoint(
                str(checkpoints / "best.keras"), monitor=MONITOR, save_best_only=True
            ),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
            *([EpochProgress(settings.epochs, steps)] if verbose > 0 else []),
        ],
        add_history=True,
        # Progress goes to stderr, and as a bar only on a terminal (EpochProgress): Keras's own
        # bar would write to stdout, which must stay clean for the command's output.
        add_progbar=False,
        model=model,
        verbose=verbose,
        epochs=settings.epochs,
        steps=steps,
    )
    return callbacks, early


def fit_model(
    model: keras.Model,
    train: pipeline.DecodedSet,
    val: pipeline.DecodedSet,
    settings: FitSettings,
    run_dir: Path,
    *,
    strategy: tf.distribute.Strategy,
    verbose: int = 1,
) -> tuple[dict[str, list[float]], keras.callbacks.EarlyStopping, float]:
    """Run the epochs; returns (history, early-stopping callback, seconds spent in steps)."""
    batch = min(settings.batch_size, len(train))
    steps = max(1, len(train) // batch)
    ema = ema_momentum_for(settings.ema_momentum, steps)
    with strategy.scope():
        optimizer = keras.optimizers.Adam(
            lr_schedule(settings.learning_rate, steps, settings.epochs, settings.warmup_epochs),
            use_ema=ema > 0,
            ema_momentum=ema or 0.99,
            # Overwrite with the average once per epoch, right before validation.
            ema_overwrite_frequency=steps if ema > 0 else None,
        )
        optimizer.build(model.trainable_variables)
    weights = pipeline.sample_weights(train.labels, pipeline.class_weights(train.labels))
    batches = iter(
        strategy.experimental_distribute_dataset(
            pipeline.train_dataset(train, weights, batch, settings.seed, settings.augment)
        )
    )
    val_ds = pipeline.eval_dataset(val, 128)
    step = _train_step(model, optimizer, strategy, batch)
    infer = logits_function(model)
    callbacks, early = _callbacks(model, settings, run_dir, steps, verbose)
    model.stop_training = False
    callbacks.on_train_begin()
    step_seconds = 0.0
    for epoch in range(settings.epochs):
        callbacks.on_epoch_begin(epoch)
        logs, seconds = _run_epoch(step, batches, steps, callbacks)
        step_seconds += seconds
        logs.update(_validation_logs(infer, val_ds, val.labels))
        logs["lr"] = float(optimizer.learning_rate)
        logs["epoch_seconds"] = seconds
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end()
    history = model.history.history if model.history is not None else {}
    return {k: [float(v) for v in vs] for k, vs in history.items()}, early, step_seconds


def _run_epoch(
    step: Callable[[Any], tuple[tf.Tensor, tf.Tensor, tf.Tensor]],
    batches: Iterator[Any],
    steps: int,
    callbacks: keras.callbacks.CallbackList,
) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    loss_sum = correct = count = 0.0
    for i in range(steps):
        batch = next(batches)
        callbacks.on_train_batch_begin(i)
        loss, right, n = (float(t) for t in step(batch))
        loss_sum += loss * n
        correct += right
        count += n
        callbacks.on_train_batch_end(i, {"loss": loss_sum / count, "accuracy": correct / count})
    elapsed = time.perf_counter() - started
    logs = {"loss": loss_sum / max(count, 1.0), "accuracy": correct / max(count, 1.0)}
    logs["images_per_second"] = count / max(elapsed, 1e-9)
    return logs, elapsed


def calibrate(model: keras.Model, val: pipeline.DecodedSet) -> tuple[float, float, dict[str, Any]]:
    """(temperature, threshold, summary) fitted on the validation split."""
    logits = predict_logits(model, val)
    temperature = calibration.fit_temperature(logits, val.labels)
    probs = calibration.sigmoid(logits / temperature)
    threshold = calibration.choose_threshold(probs, val.labels)
    summary = calibration.calibration_summary(logits, val.labels, temperature)
    summary["threshold"] = threshold
    precision = calibration.UNCERTAIN_PRECISION
    band = calibration.uncertain_band(probs, val.labels, threshold, precision=precision)
    summary.update(uncertain_band=list(band), uncertain_precision=precision)
    return temperature, threshold, summary


def split_metrics(
    model: keras.Model, data: pipeline.DecodedSet, temperature: float, threshold: float
) -> dict[str, Any]:
    """Evaluation metrics of one decoded split with the fitted calibration."""
    probs = calibration.sigmoid(predict_logits(model, data) / temperature)
    return evaluate.compute_metrics(data.labels, probs, data.sources, threshold)


def fit_scratch(
    splits: DatasetSplits,
    settings: FitSettings,
    *,
    run_dir: Path,
    cache_dir: Path | None,
    verbose: int,
) -> Fitted:
    """Decode, fit and calibrate a registry CNN; metrics of validation and test."""
    keras.utils.set_random_seed(settings.seed)
    data = {
        name: pipeline.decode_samples(splits.split(name), settings.image_size, cache_dir=cache_dir)
        for name in ("train", "validate", "test")
    }
    strategy = distribution_strategy()
    with strategy.scope():
        model = architectures.build(settings.arch, settings.image_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    history, early, step_seconds = fit_model(
        model,
        data["train"],
        data["validate"],
        settings,
        run_dir,
        strategy=strategy,
        verbose=verbose,
    )
    temperature, threshold, calib = calibrate(model, data["validate"])
    metrics = {
        name: split_metrics(model, data[name], temperature, threshold)
        for name in ("validate", "test")
        if len(data[name])
    }
    epochs_run = len(history.get("loss", []))
    info = {
        "history": history,
        "best_epoch": early.best_epoch + 1,
        "epochs_run": epochs_run,
        "stopped_early": early.stopped_epoch > 0,
        "calibration": calib,
        "train_seconds": step_seconds,
        "images_per_second": epochs_run * len(data["train"]) / max(step_seconds, 1e-9),
    }
    meta = ModelMeta(
        version="pending",
        arch=settings.arch,
        input_size=settings.image_size,
        threshold=threshold,
        temperature=temperature,
        uncertain_band=(calib["uncertain_band"][0], calib["uncertain_band"][1]),
        uncertain_precision=calib["uncertain_precision"],
        data_fingerprint=fingerprint(splits.all()),
        metrics=metrics,
    )
    return Fitted(
        model=model,
        meta=meta,
        info=info,
        train_labels=data["train"].labels,
        judge=whole_view_judge(data["validate"], temperature, threshold),
        half=None,
    )
