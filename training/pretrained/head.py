"""Training the pretrained-backbone model: features once, a linear head, a fitted combination.

The ImageNet backbone stays frozen, so each picture's pooled features are computed once per
view (and once per augmented copy) instead of every epoch: on two CPU cores the whole run is
a few passes of the backbone plus seconds of logistic regression. The head is a logistic
regression with its standardisation folded into the model's Dense layer, so the bundle still
takes raw 0..255 pixels and returns one logit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import Progress
from sklearn.linear_model import LogisticRegression

from detector.scoring import CombineRule
from training import augment as aug
from training import calibration, evaluate
from training.bars import bar_columns, is_terminal
from training.pretrained.network import BACKBONE_NAME, NORM_NAME, feature_model, head_model
from training.progress import EpochProgress
from training.viewsets import ViewSet, save_cache

logger = logging.getLogger(__name__)

# Upper bound on head epochs; early stopping on validation loss ends sooner.
HEAD_EPOCHS = 40
BATCH = 64
# Bumped whenever the same pictures and backbone would give other feature rows.
FEATURES_VERSION = 2
# Smallest feature variance used for standardising (std 1e-4; pooled activations are ~0.01-1).
MIN_VARIANCE = 1e-8


@dataclass(frozen=True, slots=True)
class Head:
    """A fitted head (standardisation + MLP) on pooled feature vectors."""

    model: keras.Model
    epochs: int
    val_loss: float

    def logits(self, feats: np.ndarray) -> np.ndarray:
        """Logits of raw feature rows, as float64."""
        if not len(feats):
            return np.zeros(0)
        out = self.model.predict(np.asarray(feats, np.float32), batch_size=1024, verbose=0)
        return np.asarray(out, dtype=np.float64).reshape(-1)


class FeatureExtractor:
    """Pooled backbone features of uint8 batches, optionally augmented first (train only)."""

    def __init__(self, model: keras.Model, augment: aug.AugmentConfig, seed: int) -> None:
        feats = feature_model(model)
        self._features = tf.function(lambda x: feats(x, training=False), reduce_retracing=True)
        self._augment = augment
        self._seed = seed
        # What the features depend on besides the pixels: backbone weights, augmentation, seed.
        digest = hashlib.sha256(json.dumps(augment.to_dict(), sort_keys=True).encode())
        digest.update(f"{seed}".encode())
        for weight in model.get_layer(BACKBONE_NAME).get_weights():
            digest.update(np.ascontiguousarray(weight).tobytes())
        self.identity = digest.hexdigest()[:24]

    def __call__(
        self,
        pixels: np.ndarray,
        augment_pass: int = 0,
        advance: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """(N, D) float32 features; pass k > 0 applies augmentation with its own seeds."""
        out = []
        for start in range(0, len(pixels), BATCH):
            batch = tf.constant(np.asarray(pixels[start : start + BATCH]))
            x = tf.cast(batch, tf.float32)
            if augment_pass:
                seed = tf.constant([self._seed + augment_pass, start], dtype=tf.int32)
                x = aug.augment_batch(x, seed, self._augment)
            out.append(self._features(x).numpy())
            if advance is not None:
                advance(len(batch))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass(frozen=True, slots=True)
class Rows:
    """Feature rows of a split: one per view per pass, with the picture each came from."""

    feats: np.ndarray  # (R, D) float32
    labels: np.ndarray  # (R,)
    is_face: np.ndarray  # (R,) bool
    index: np.ndarray  # (R,) picture row in the ViewSet

    def of_pictures(self, keep: np.ndarray) -> Rows:
        """Rows of the pictures where `keep` is True, picture indices renumbered."""
        renumber = np.cumsum(keep) - 1
        sel = keep[self.index]
        return Rows(self.feats[sel], self.labels[sel], self.is_face[sel], renumber[self.index[sel]])


def cached_rows(
    extract: FeatureExtractor, views: ViewSet, passes: int, cache_dir: Path | None
) -> Rows:
    """view_features, from disk when the same pictures, backbone and augmentation were seen."""
    if cache_dir is None or not views.key:
        return Rows(*view_features(extract, views, passes))
    identity = f"{FEATURES_VERSION}/{views.key}/{passes}/{extract.identity}"
    path = cache_dir / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}-features.npz"
    if path.is_file():
        logger.info("using backbone-features cache %s", path)
        with np.load(path) as data:
            return Rows(data["feats"], data["labels"], data["is_face"], data["index"])
    rows = Rows(*view_features(extract, views, passes))
    arrays = {
        "feats": rows.feats,
        "labels": rows.labels,
        "is_face": rows.is_face,
        "index": rows.index,
    }
    save_cache(path, arrays, "backbone-features")
    return rows


def view_features(
    extract: FeatureExtractor, views: ViewSet, passes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stacked features of whole and face views over `passes` copies (0 = unaugmented):
    (features, labels, is_face, picture index)."""
    feats: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    is_face: list[np.ndarray] = []
    index: list[np.ndarray] = []
    faces = np.flatnonzero(views.has_face)
    total = passes * (len(views) + len(faces))
    with feature_bar(total) as advance:
        for k in range(passes):
            _pass_features(extract, views, faces, k, advance, (feats, labels, is_face, index))
    return (
        np.concatenate(feats),
        np.concatenate(labels),
        np.concatenate(is_face),
        np.concatenate(index),
    )


@contextlib.contextmanager
def feature_bar(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over the views (on a terminal's stderr only; logs say the rest)."""
    if not is_terminal(sys.stderr):
        yield lambda n: None
        return
    with Progress(*bar_columns(), console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("backbone features", total=total)
        yield lambda n: bar.advance(task, n)


def _pass_features(
    extract: FeatureExtractor,
    views: ViewSet,
    faces: np.ndarray,
    k: int,
    advance: Callable[[int], None],
    out: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]],
) -> None:
    """One pass: whole views, then face views, appended to `out`."""
    feats, labels, is_face, index = out
    for pixels, rows, face in (
        (views.whole, np.arange(len(views)), False),
        (views.face, faces, True),
    ):
        if not len(rows):
            continue
        started = time.perf_counter()
        feats.append(extract(pixels[rows], k, advance))
        labels.append(views.labels[rows])
        is_face.append(np.full(len(rows), face))
        index.append(rows)
        logger.info(
            "features: pass %d, %s views, %d images, %.0f images/s",
            k,
            "face" if face else "whole",
            len(rows),
            len(rows) / max(time.perf_counter() - started, 1e-9),
        )


def fit_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    seed: int,
    *,
    max_epochs: int = HEAD_EPOCHS,
) -> Head:
    """Standardisation from the training rows, then the MLP with class weights, Adam and
    early stopping on validation loss (best weights kept)."""
    keras.utils.set_random_seed(seed)
    model = head_model(train_x.shape[1])
    x64 = train_x.astype(np.float64)
    # Floor: a feature that barely varies would be divided by ~0 and turn float noise between
    # two runs of the same backbone (oneDNN reorders sums) into huge logits.
    mean, variance = x64.mean(axis=0), np.maximum(x64.var(axis=0), MIN_VARIANCE)
    norm = model.get_layer(NORM_NAME)
    norm.adapt_mean.assign(mean.astype(np.float32))
    norm.adapt_variance.assign(variance.astype(np.float32))
    norm.count.assign(len(train_x))
    norm.finalize_state()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    weights = class_weights(train_y)
    started = time.perf_counter()
    history = model.fit(
        np.asarray(train_x, np.float32),
        train_y.astype(np.float32),
        validation_data=(np.asarray(val_x, np.float32), val_y.astype(np.float32)),
        epochs=max_epochs,
        batch_size=256,
        class_weight=weights,
        callbacks=[stop, EpochProgress(max_epochs, -(-len(train_x) // 256))],
        verbose=0,
    )
    losses = history.history["val_loss"]
    best = int(np.argmin(losses))
    logger.info(
        "head: %d epochs (best %d), validation loss %.4f, %.0f s",
        len(losses),
        best + 1,
        losses[best],
        time.perf_counter() - started,
    )
    return Head(model=model, epochs=best + 1, val_loss=float(losses[best]))


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced class weights (n / (2 * n_class))."""
    y = (np.asarray(labels) >= 0.5).astype(int)
    counts = np.bincount(y, minlength=2).astype(float)
    return {c: float(len(y) / (2.0 * max(counts[c], 1.0))) for c in (0, 1)}


@dataclass(frozen=True, slots=True)
class PictureLogits:
    """Per picture: whole-view logit and best face logit (NaN without a face)."""

    whole: np.ndarray
    face: np.ndarray
    has_face: np.ndarray


def fit_combination(val: PictureLogits, labels: np.ndarray, seed: int) -> CombineRule:
    """The picture rule on validation: LR on (whole, face) logits; LR on whole alone."""
    y = (labels >= 0.5).astype(int)
    only = LogisticRegression(C=1e4, random_state=seed).fit(val.whole[:, None], y)
    rows = val.has_face
    if rows.sum() < 10 or len(set(y[rows])) < 2:
        return CombineRule(
            whole=float(only.coef_[0][0]),
            face=0.0,
            bias=float(only.intercept_[0]),
            whole_only=float(only.coef_[0][0]),
            bias_only=float(only.intercept_[0]),
        )
    both = LogisticRegression(C=1e4, random_state=seed)
    both.fit(np.stack([val.whole[rows], val.face[rows]], axis=1), y[rows])
    return CombineRule(
        whole=float(both.coef_[0][0]),
        face=float(both.coef_[0][1]),
        bias=float(both.intercept_[0]),
        whole_only=float(only.coef_[0][0]),
        bias_only=float(only.intercept_[0]),
    )


def picture_probs(rule: CombineRule, logits: PictureLogits) -> np.ndarray:
    """Combined P(ai) per picture."""
    face = np.nan_to_num(logits.face, nan=0.0)
    return calibration.sigmoid(rule.logits(logits.whole, face, logits.has_face))


def view_metrics(
    logits: PictureLogits, labels: np.ndarray, sources: tuple[str, ...], temperature: float
) -> dict[str, Any]:
    """Whole view alone and face view alone (each at its own validation-free 0.5 threshold)."""
    out: dict[str, Any] = {}
    whole = calibration.sigmoid(logits.whole / temperature)
    out["whole"] = _brief(evaluate.compute_metrics(labels, whole, sources, 0.5))
    rows = logits.has_face
    if rows.any():
        face = calibration.sigmoid(logits.face[rows] / temperature)
        picked = tuple(s for s, r in zip(sources, rows, strict=True) if r)
        out["face"] = _brief(evaluate.compute_metrics(labels[rows], face, picked, 0.5))
    return out


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("accuracy", "roc_auc", "n")
    brief = {k: metrics[k] for k in keep if k in metrics}
    brief["per_source_accuracy"] = {
        s: v.get("accuracy") for s, v in metrics.get("per_source", {}).items()
    }
    return brief
