"""Fine-tuning the upper MobileNet blocks (conv_dw_12 ... conv_pw_13) on the task.

Kept only where the leave-one-source-out table says it helps (DETECTION.md): fine-tuning alone
sharpens the evidence and keeps the quality shortcut, so it runs on the same rows as the head,
degraded passes, self-blends and quality weights included.

On a CPU the network below the tuned blocks stays frozen: its output for every view row
(`conv_pw_11`, 14 x 14 x 512 at 224 px) is computed once and kept on disk as float16, so an
epoch costs only blocks 12 and 13 (3.5 minutes for 58,000 rows on two cores, measured).
Of the pooled features only those of `conv_pw_13` depend on the tuned blocks; the shallower
ones stay the cached rows.

The objective is the head's own (weighted logistic loss, L2 on the linear unit), started from
the frozen head's optimum; the blocks' convolutions train, their batch normalisation stays as it is.
Afterwards the `conv_pw_13` features of every row are recomputed from the maps and the head is
fitted again by the usual code, so everything downstream (rule, calibration, exports) is the
same as for a frozen backbone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import keras
import numpy as np

from detector.views import ViewSpec
from training.datasets import SPLITS, DatasetSplits, Sample
from training.pretrained import features
from training.pretrained.data import SplitData, kept_rows
from training.pretrained.head import Head, row_weights
from training.pretrained.network import BACKBONE_NAME, TAPS
from training.settings import FitSettings

logger = logging.getLogger(__name__)

LOWER_OUTPUT: Final[str] = "conv_pw_11_relu"
TUNED_TAP: Final[str] = "conv_pw_13_relu"
# The layers between LOWER_OUTPUT and TUNED_TAP, in order (Keras MobileNet v1 names).
UPPER_LAYERS: Final[tuple[str, ...]] = (
    "conv_pad_12",
    "conv_dw_12",
    "conv_dw_12_bn",
    "conv_dw_12_relu",
    "conv_pw_12",
    "conv_pw_12_bn",
    "conv_pw_12_relu",
    "conv_dw_13",
    "conv_dw_13_bn",
    "conv_dw_13_relu",
    "conv_pw_13",
    "conv_pw_13_bn",
    "conv_pw_13_relu",
)
LEARNING_RATE: Final[float] = 1e-4
BATCH: Final[int] = 64
_PREDICT_CHUNK: Final[int] = 512
# Pooled conv_pw_13 features recomputed from float16 maps by the untouched blocks must match the
# cached rows this closely (relative to the features' spread), or the maps are not these rows.
_MATCH_TOLERANCE: Final[float] = 0.05

# Upper-block weights by layer name.
Tuned = dict[str, list[np.ndarray]]


@dataclass(frozen=True, slots=True)
class MapStore:
    """conv_pw_11 maps of a split's rows: float16 memmaps (one per pass) and, per row of the
    split's SplitData, its position in them."""

    parts: tuple[np.ndarray, ...]
    positions: np.ndarray  # (R,) int64, into the parts laid end to end

    def __len__(self) -> int:
        return len(self.positions)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), H, W, C) float32 maps of these rows."""
        where = self.positions[rows]
        ends = np.cumsum([len(p) for p in self.parts])
        out = np.empty((len(rows), *self.parts[0].shape[1:]), np.float32)
        part = np.searchsorted(ends, where, side="right")
        starts = ends - np.array([len(p) for p in self.parts])
        for k in np.unique(part):
            sel = part == k
            local = where[sel] - starts[k]
            order = np.argsort(local)  # memmaps read fastest front to back
            got = np.asarray(self.parts[k][local[order]], np.float32)
            out[np.flatnonzero(sel)[order]] = got
        return out


def lower_model(model: keras.Model) -> keras.Model:
    """The contract model's input up to the conv_pw_11 maps (shares the model's weights)."""
    backbone = model.get_layer(BACKBONE_NAME)
    lower = keras.Model(backbone.input, backbone.get_layer(LOWER_OUTPUT).output)
    x = model.get_layer("mobilenet_preprocess").output
    return keras.Model(model.inputs, lower(x), name="lower")


def split_maps(
    splits: DatasetSplits,
    every: dict[str, SplitData],
    render: tuple[ViewSpec, features.Passes],
    model: keras.Model,
    extract: features.Extractor,
    cache_dir: Path,
) -> dict[str, MapStore]:
    """The maps of every row of `every` (computed once per pass, cached beside the rows)."""
    spec, passes = render
    runner: features.LiteRTRunner | None = None
    out: dict[str, MapStore] = {}
    for name in SPLITS:
        samples = splits.split(name)
        numbers = passes.numbers() if name == "train" else [features.PLAIN]
        parts, raw = [], []
        for number in numbers:
            rows = features.pass_rows(samples, number, spec, passes, extract, cache_dir)
            path = _maps_path(samples, number, spec, passes, extract, cache_dir)
            if not _complete(path, len(rows)):
                runner = runner or features.LiteRTRunner(lower_model(model), spec.size)
                _write_maps(path, samples, number, spec, passes, rows, runner)
            parts.append(np.load(path, mmap_mode="r"))
            raw.append(rows)
        positions = np.flatnonzero(kept_rows(len(samples), features.Rows.concat(raw)))
        if len(positions) != len(every[name].rows):
            raise RuntimeError(f"{name}: {len(positions)} maps for {len(every[name].rows)} rows")
        out[name] = MapStore(tuple(parts), positions.astype(np.int64))
    return out


def _maps_path(
    samples: Sequence[Sample],
    number: int,
    spec: ViewSpec,
    passes: features.Passes,
    extract: features.Extractor,
    cache_dir: Path,
) -> Path:
    rows = features.cache_path(samples, number, spec, passes, extract, cache_dir)
    assert rows is not None
    return rows.with_name(rows.name.replace("-rows.npz", f"-maps-{LOWER_OUTPUT}.npy"))


def _complete(path: Path, n: int) -> bool:
    if not path.is_file():
        return False
    try:
        return len(np.load(path, mmap_mode="r")) == n
    except (OSError, ValueError):
        return False


def _write_maps(
    path: Path,
    samples: Sequence[Sample],
    number: int,
    spec: ViewSpec,
    passes: features.Passes,
    rows: features.Rows,
    runner: features.LiteRTRunner,
) -> None:
    """Render pass `number` again and store each row's maps, checking the rows line up."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    out = np.lib.format.open_memmap(partial, "w+", np.float16, (len(rows), *runner.shape))
    at = 0
    for pixels, meta in features.view_batches(samples, number, spec, passes):
        kinds = np.array([m[0] for m in meta])
        index = np.array([m[1] for m in meta])
        end = at + len(meta)
        if (
            end > len(rows)
            or not np.array_equal(kinds, rows.kind[at:end])
            or not np.array_equal(index, rows.index[at:end])
        ):
            raise RuntimeError(f"pass {number}: the views rendered now are not the cached rows")
        out[at:end] = runner(pixels).astype(np.float16)
        at = end
    if at != len(rows):
        raise RuntimeError(f"pass {number}: {at} views rendered for {len(rows)} cached rows")
    out.flush()
    del out
    partial.replace(path)
    logger.info(
        "maps: pass %d, %d views, %.0f views/s", number, at, at / (time.perf_counter() - started)
    )


def tuned_columns(width: int, model: keras.Model) -> slice:
    """The columns of the pooled features that the tuned blocks produce (the last tap's)."""
    if TAPS[-1] != TUNED_TAP:
        raise RuntimeError(f"the last tap is {TAPS[-1]}, expected {TUNED_TAP}")
    channels = int(model.get_layer(BACKBONE_NAME).get_layer(TUNED_TAP).output.shape[-1])
    return slice(width - 2 * channels, width)


def upper_model(model: keras.Model, weights: Tuned | None = None) -> keras.Model:
    """A copy of the upper blocks from conv_pw_11 maps to the pooled conv_pw_13 features
    (mean and mean square per channel, as `network.features` pools them). Its own weights:
    training it leaves `model` as it was. Batch statistics stay fixed (BatchNormalization
    with trainable False runs in inference mode)."""
    backbone = model.get_layer(BACKBONE_NAME)
    maps = keras.Input(tuple(backbone.get_layer(LOWER_OUTPUT).output.shape[1:]), name="maps")
    y = maps
    for name in UPPER_LAYERS:
        layer = backbone.get_layer(name)
        clone = layer.__class__.from_config(layer.get_config())
        y = clone(y)
        clone.set_weights(weights[name] if weights is not None else layer.get_weights())
        # The config carries the frozen backbone's trainable=False: decide here.
        clone.trainable = not isinstance(clone, keras.layers.BatchNormalization)
    mean = keras.layers.GlobalAveragePooling2D()(y)
    square = keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([y, y]))
    return keras.Model(maps, keras.layers.Concatenate()([mean, square]), name="upper")


def upper_weights(upper: keras.Model) -> Tuned:
    """The blocks' weights of an `upper_model` (its layers keep the backbone's names)."""
    return {name: upper.get_layer(name).get_weights() for name in UPPER_LAYERS}


def apply(model: keras.Model, tuned: Tuned) -> None:
    """Put tuned upper-block weights into a model's backbone."""
    backbone = model.get_layer(BACKBONE_NAME)
    for name, weights in tuned.items():
        backbone.get_layer(name).set_weights(weights)


def pooled(upper: keras.Model, maps: MapStore, rows: np.ndarray | None = None) -> np.ndarray:
    """(R, 2C) pooled conv_pw_13 features of the rows (all rows when None)."""
    rows = np.arange(len(maps)) if rows is None else rows
    width = int(upper.output.shape[-1])
    out = np.empty((len(rows), width), np.float32)
    for start in range(0, len(rows), _PREDICT_CHUNK):
        chunk = rows[start : start + _PREDICT_CHUNK]
        # predict_on_batch runs a compiled function: eager calls took 2.5x as long here.
        out[start : start + len(chunk)] = upper.predict_on_batch(maps.gather(chunk))
    return out


def check_maps(
    model: keras.Model, start: Tuned, data: SplitData, maps: MapStore, n: int = 64
) -> float:
    """How far the blocks the rows were computed with (`start`), run on the stored maps, are
    from the cached features (relative to the features' spread); raises when the maps cannot
    be these rows."""
    cols = tuned_columns(data.rows.feats.shape[1], model)
    rows = np.linspace(0, len(maps) - 1, min(n, len(maps))).astype(np.int64)
    got = pooled(upper_model(model, start), maps, rows)
    want = data.rows.feats[rows, cols]
    spread = np.maximum(data.rows.feats[:, cols].std(axis=0), 1e-6)
    error = float(np.median(np.abs(got - want) / spread))
    if not error < _MATCH_TOLERANCE:
        raise RuntimeError(f"maps do not reproduce the cached features (error {error:.3f})")
    return error


class _Batches(keras.utils.PyDataset):
    """Shuffled batches of (maps, frozen features) with labels and row weights."""

    def __init__(
        self,
        maps: MapStore,
        frozen: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray,
        seed: int,
    ) -> None:
        """`rows`: row numbers into `maps` and `frozen`; `labels`, `weights`: one per entry
        of `rows`."""
        super().__init__()
        self._maps, self._frozen = maps, frozen
        self._rows, self._labels, self._weights = rows, labels, weights
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(rows))

    def __len__(self) -> int:
        return math.ceil(len(self._rows) / BATCH)

    def __getitem__(self, i: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        pick = np.sort(self._order[i * BATCH : (i + 1) * BATCH])
        rows = self._rows[pick]
        inputs = (self._maps.gather(rows), self._frozen[rows])
        return inputs, self._labels[pick], self._weights[pick]

    def on_epoch_end(self) -> None:
        self._order = self._rng.permutation(len(self._rows))


def _trainer(upper: keras.Model, head: Head, cols: slice, rows: int, c: float) -> keras.Model:
    """Maps and frozen features in, the head's logit out; the upper blocks (`upper`'s layers,
    trained in place) and the linear unit trainable, both standardisations fixed at the
    frozen head's."""
    width = len(head.mean)
    frozen_cols = np.r_[0 : cols.start, cols.stop : width]
    frozen_in = keras.Input((len(frozen_cols),), name="frozen")
    z_frozen = keras.layers.Normalization(
        mean=head.mean[frozen_cols], variance=head.variance[frozen_cols]
    )(frozen_in)
    z_tuned = keras.layers.Normalization(mean=head.mean[cols], variance=head.variance[cols])(
        upper.output
    )
    # sklearn minimises 0.5 |w|^2 + C sum(weight * loss); Keras the mean weighted loss.
    unit = keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(1.0 / (2 * c * rows)))
    logit = unit(keras.layers.Concatenate()([z_frozen, z_tuned]))
    unit.set_weights(
        [np.r_[head.coef[frozen_cols], head.coef[cols]].reshape(-1, 1), np.array([head.bias])]
    )
    trainer = keras.Model([upper.input, frozen_in], logit)
    trainer.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return trainer


def backbone_weights(model: keras.Model) -> Tuned:
    """The upper blocks' weights as they are in a model's backbone."""
    backbone = model.get_layer(BACKBONE_NAME)
    return {name: backbone.get_layer(name).get_weights() for name in UPPER_LAYERS}


def tune(
    every: dict[str, SplitData],
    maps: dict[str, MapStore],
    head: Head,
    leave_out: Sequence[str],
    settings: FitSettings,
    model: keras.Model,
    start: Tuned,
) -> tuple[dict[str, SplitData], Tuned]:
    """Fine-tune the upper blocks from `start` (the weights the rows' features were computed
    with) on the training rows without `leave_out`'s pictures, the linear unit starting from
    `head`, a frozen head fitted on the same rows. Returns every split with its conv_pw_13
    features recomputed by the tuned blocks, and the tuned weights (`model` is left as it
    was: `apply` puts them in)."""
    started = time.perf_counter()
    train = every["train"]
    cols = tuned_columns(train.rows.feats.shape[1], model)
    fitting = train.fitting_mask(settings.views, settings.self_blend)
    rows = np.flatnonzero(fitting & ~np.isin(train.row_sources(), list(leave_out)))
    weights = row_weights(train.rows.take(rows), settings.balance_quality)
    weights = (weights / weights.mean()).astype(np.float32)  # per row of `rows`
    frozen = np.delete(train.rows.feats, np.arange(cols.start, cols.stop), axis=1)
    labels = (train.rows.labels[rows] >= 0.5).astype(np.float32)
    upper = upper_model(model, start)
    trainer = _trainer(upper, head, cols, len(rows), settings.head_c)
    batches = _Batches(maps["train"], frozen, rows, labels, weights, settings.seed)
    for epoch in range(settings.fine_tune_epochs):
        history = trainer.fit(batches, epochs=1, verbose=0)
        logger.info(
            "fine-tuning: epoch %d/%d, loss %.4f, %.0f s",
            epoch + 1,
            settings.fine_tune_epochs,
            history.history["loss"][-1],
            time.perf_counter() - started,
        )
    tuned = upper_weights(upper)
    out = {}
    for name, split in every.items():
        feats = split.rows.feats.copy()
        feats[:, cols] = pooled(upper, maps[name])
        out[name] = SplitData(split.samples, replace(split.rows, feats=feats))
    logger.info(
        "fine-tuned %s..%s on %d rows, %d epochs, %.0f s",
        UPPER_LAYERS[0],
        UPPER_LAYERS[-1],
        len(rows),
        settings.fine_tune_epochs,
        time.perf_counter() - started,
    )
    return out, tuned


def describe(settings: FitSettings) -> dict[str, object]:
    """JSON-safe form for model.json."""
    return {
        "layers": [UPPER_LAYERS[0], UPPER_LAYERS[-1]],
        "from": LOWER_OUTPUT,
        "epochs": settings.fine_tune_epochs,
        "learning_rate": LEARNING_RATE,
        "batch": BATCH,
        "batch_normalization": "fixed",
    }
