"""How a bundle stores its weights: float32, or int8 / float16 when that costs no accuracy.

Dynamic-range quantization (int8 weights, float activations) makes the `.tflite` about 4x smaller
and CPU screening faster, but it changes the scores. The rule: ship it only when the decisions
serving makes (a `Judge`: for a model with several views, each picture's label by the model's
own rule and threshold) stay within 0.2 points of the float model overall and 0.5 points on
every source of the validation split; else float16 weights under the same rule; else float32.
A check of one view alone is not enough: on the bundled v3 model int8 kept the whole view's
accuracy and moved the patch and face logits by about 1 (std 3.9), two points of pictures.
The same rule decides whether model.keras is saved with int8 (Keras `quantize("int8")`) or
float16 weights. Every comparison is stored in model.json.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from detector.bundle import check_tflite_matches, export_tflite_bytes
from training import calibration
from training.pipeline import DecodedSet

logger = logging.getLogger(__name__)

# Maps (N, S, S, 3) uint8 views to (N,) logits.
LogitFn = Callable[[np.ndarray], np.ndarray]
# Accuracy ({"accuracy": overall, "per_source": {...}}) of the decisions a logits function
# leads to, on the validation split: what the export formats are compared by.
Judge = Callable[[LogitFn], dict[str, Any]]

# Largest accuracy loss (fraction, i.e. 0.2 points) the quantized model may have overall, and
# on any one source (0.5 points).
MAX_ACCURACY_LOSS = 0.002
MAX_SOURCE_LOSS = 0.005
FLOAT32 = "float32"
FLOAT16 = "float16_weights"
DYNAMIC_INT8 = "dynamic_range_int8"
_BATCH = 64


@dataclass(frozen=True, slots=True)
class LiteRTChoice:
    """The LiteRT model to ship and why (`info` goes into model.json)."""

    content: bytes
    quantization: str
    info: dict[str, Any]


def choose_litert(model: keras.Model, size: int, judge: Judge, *, split: str) -> LiteRTChoice:
    """Export float32 and dynamic-range int8; keep int8 only where `judge` says it keeps
    accuracy (overall and on every source), else float16 weights under the same rule."""
    exact = export_tflite_bytes(model, size)
    check_tflite_matches(model, exact, size)
    info: dict[str, Any] = {
        "split": split,
        "max_accuracy_loss": MAX_ACCURACY_LOSS,
        "max_source_loss": MAX_SOURCE_LOSS,
    }
    info[FLOAT32] = _summary(exact, judge)
    try:
        small = export_tflite_bytes(model, size, quantize=True)
        info[DYNAMIC_INT8] = _summary(small, judge)
    except Exception as exc:  # the float model is still fine to ship
        logger.warning("dynamic-range quantization failed, shipping float32: %s", exc)
        info["quantization"] = FLOAT32
        return LiteRTChoice(exact, FLOAT32, info)
    keep = keeps_accuracy(info[FLOAT32], info[DYNAMIC_INT8])
    chosen, content = (DYNAMIC_INT8, small) if keep else (FLOAT32, exact)
    if not keep:
        # Half-size weights, float32 arithmetic: accuracy normally holds where int8 did not.
        half = export_tflite_bytes(model, size, float16=True)
        info[FLOAT16] = _summary(half, judge)
        if keeps_accuracy(info[FLOAT32], info[FLOAT16]):
            chosen, content = FLOAT16, half
    info["quantization"] = chosen
    logger.info(
        "LiteRT: %s (%s accuracy float32 %.4f, int8 %.4f; %.1f MB vs %.1f MB)",
        chosen,
        split,
        info[FLOAT32]["accuracy"],
        info[DYNAMIC_INT8]["accuracy"],
        len(exact) / 1e6,
        len(small) / 1e6,
    )
    return LiteRTChoice(content, chosen, info)


def keeps_accuracy(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> bool:
    """The rule: at most MAX_ACCURACY_LOSS (0.2 points) less accurate overall and at most
    MAX_SOURCE_LOSS (0.5 points) on any source."""
    if reference["accuracy"] - candidate["accuracy"] > MAX_ACCURACY_LOSS + 1e-12:
        return False
    theirs = candidate.get("per_source", {})
    return all(
        acc - theirs.get(source, 0.0) <= MAX_SOURCE_LOSS + 1e-12
        for source, acc in reference.get("per_source", {}).items()
    )


def _summary(content: bytes, judge: Judge) -> dict[str, Any]:
    return {**judge(litert_fn(content)), "bytes": len(content)}


def litert_fn(content: bytes) -> LogitFn:
    """Logits of a LiteRT model for uint8 views (N, S, S, 3), in batches."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=None)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    shape = [-1]

    def logits(pixels: np.ndarray) -> np.ndarray:
        parts: list[np.ndarray] = []
        for start in range(0, len(pixels), _BATCH):
            batch = np.asarray(pixels[start : start + _BATCH], dtype=np.float32)
            if batch.shape[0] != shape[0]:
                interpreter.resize_tensor_input(inp, list(batch.shape), strict=False)
                interpreter.allocate_tensors()
                shape[0] = batch.shape[0]
            interpreter.set_tensor(inp, batch)
            interpreter.invoke()
            parts.append(np.asarray(interpreter.get_tensor(out), dtype=np.float64).reshape(-1))
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float64)

    return logits


def litert_logits(content: bytes, pixels: np.ndarray) -> np.ndarray:
    """Logits of a LiteRT model for uint8 pixels (N, S, S, 3)."""
    return litert_fn(content)(pixels)


def keras_fn(model: keras.Model) -> LogitFn:
    """Logits of a Keras model for uint8 views, in batches."""

    def logits(pixels: np.ndarray) -> np.ndarray:
        parts = [
            model.predict(
                np.asarray(pixels[i : i + 1024], np.float32), batch_size=_BATCH, verbose=0
            )
            for i in range(0, len(pixels), 1024)  # float copies of a thousand views at a time
        ]
        return np.concatenate(parts).astype(np.float64).reshape(-1) if parts else np.zeros(0)

    return logits


def quantize_keras_if_lossless(
    model: keras.Model, judge: Judge
) -> tuple[keras.Model, dict[str, Any]]:
    """The model to save: an int8-weight copy when it keeps accuracy by the rule, else `model`."""
    small = keras.models.clone_model(model)
    small.set_weights(model.get_weights())
    with warnings.catch_warnings():
        # Layers without weights (Flatten, Dropout, ...) warn that they cannot be quantized.
        warnings.simplefilter("ignore", UserWarning)
        small.quantize("int8")
    info: dict[str, Any] = {FLOAT32: judge(keras_fn(model)), "int8": judge(keras_fn(small))}
    keep = keeps_accuracy(info[FLOAT32], info["int8"])
    info["weights"] = "int8" if keep else FLOAT32
    logger.info(
        "model.keras weights: %s (accuracy float32 %.4f, int8 %.4f)",
        info["weights"],
        info[FLOAT32]["accuracy"],
        info["int8"]["accuracy"],
    )
    return (small if keep else model), info


def whole_view_judge(data: DecodedSet, temperature: float, threshold: float) -> Judge:
    """A judge for one-view models: the label of each decoded picture at the threshold."""

    def judge(logits_of: LogitFn) -> dict[str, Any]:
        probs = calibration.sigmoid(logits_of(np.asarray(data.pixels)) / temperature)
        return accuracy_report(probs >= threshold, data.labels, data.sources)

    return judge


def accuracy_report(
    calls: np.ndarray, labels: np.ndarray, sources: Sequence[str]
) -> dict[str, Any]:
    """Accuracy of `calls` (True = ai) overall and per source."""
    right = np.asarray(calls) == (np.asarray(labels) >= 0.5)
    src = np.asarray(sources, dtype=object)
    per_source = {str(s): float(right[src == s].mean()) for s in sorted(set(sources))}
    return {"accuracy": float(right.mean()) if right.size else 0.0, "per_source": per_source}


def choose_exports(
    model: keras.Model,
    size: int,
    judge: Judge,
    *,
    half: Callable[[keras.Model], keras.Model] | None,
) -> tuple[LiteRTChoice | None, keras.Model, dict[str, Any]]:
    """The LiteRT export and the Keras weights to ship, each kept only where `judge` (on the
    validation split) says accuracy holds; float16 Keras weights are tried where int8 costs
    accuracy and `half` makes such a copy."""
    litert = None
    try:
        litert = choose_litert(model, size, judge, split="validate")
    except Exception as exc:  # the bundle still works through Keras
        logger.warning("LiteRT export failed, the bundle ships without it: %s", exc)
    saved, keras_weights = quantize_keras_if_lossless(model, judge)
    if keras_weights["weights"] == FLOAT32 and half is not None:
        # int8 loses accuracy on conv-heavy networks; float16 storage halves the file.
        copy = half(model)
        keras_weights[FLOAT16] = judge(keras_fn(copy))
        if keeps_accuracy(keras_weights[FLOAT32], keras_weights[FLOAT16]):
            saved, keras_weights["weights"] = copy, FLOAT16
    keras_weights["split"] = "validate"
    return litert, saved, keras_weights
