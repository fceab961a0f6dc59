"""How a bundle stores its weights: float32, or int8 when that costs no accuracy.

Dynamic-range quantization (int8 weights, float activations) makes the `.tflite` about 4x smaller
and CPU screening about twice as fast, but it changes the scores. The performance issue's rule:
ship it only when test accuracy stays within 0.2 points of the float model; otherwise float32.
The comparison is made here, at training time, with both exports run through the LiteRT
interpreter on the validation split, and stored in model.json for the record. The same rule decides
whether model.keras is saved with int8 weights (Keras `quantize("int8")`): the float32 dense head
of the default network alone is 13 MB as float32; int8 keeps the bundle a few MB.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from detector.bundle import check_tflite_matches, export_tflite_bytes
from training import calibration
from training.pipeline import DecodedSet

logger = logging.getLogger(__name__)

# Largest accuracy loss (fraction, i.e. 0.2 points) the quantized model may have.
MAX_ACCURACY_LOSS = 0.002
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


def choose_litert(
    model: keras.Model,
    size: int,
    data: DecodedSet,
    *,
    temperature: float,
    threshold: float,
    split: str,
) -> LiteRTChoice:
    """Export float32 and dynamic-range int8; keep int8 only within MAX_ACCURACY_LOSS on `data`."""
    exact = export_tflite_bytes(model, size)
    check_tflite_matches(model, exact, size)
    info: dict[str, Any] = {"split": split, "max_accuracy_loss": MAX_ACCURACY_LOSS}
    info[FLOAT32] = _summary(exact, data, temperature, threshold)
    try:
        small = export_tflite_bytes(model, size, quantize=True)
        info[DYNAMIC_INT8] = _summary(small, data, temperature, threshold)
    except Exception as exc:  # the float model is still fine to ship
        logger.warning("dynamic-range quantization failed, shipping float32: %s", exc)
        info["quantization"] = FLOAT32
        return LiteRTChoice(exact, FLOAT32, info)
    keep = quantization_keeps_accuracy(info[FLOAT32]["accuracy"], info[DYNAMIC_INT8]["accuracy"])
    chosen, content = (DYNAMIC_INT8, small) if keep else (FLOAT32, exact)
    if not keep:
        # Half-size weights, float32 arithmetic: accuracy normally holds where int8 did not.
        half = export_tflite_bytes(model, size, float16=True)
        info[FLOAT16] = _summary(half, data, temperature, threshold)
        if quantization_keeps_accuracy(info[FLOAT32]["accuracy"], info[FLOAT16]["accuracy"]):
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


def quantization_keeps_accuracy(float_accuracy: float, int8_accuracy: float) -> bool:
    """The rule: int8 may be at most MAX_ACCURACY_LOSS (0.2 points) less accurate."""
    return float_accuracy - int8_accuracy <= MAX_ACCURACY_LOSS + 1e-12


def _summary(
    content: bytes, data: DecodedSet, temperature: float, threshold: float
) -> dict[str, Any]:
    probs = calibration.sigmoid(litert_logits(content, data.pixels) / temperature)
    accuracy = float(np.mean((probs >= threshold) == (data.labels >= 0.5))) if len(data) else 0.0
    return {"accuracy": accuracy, "bytes": len(content)}


def litert_logits(content: bytes, pixels: np.ndarray) -> np.ndarray:
    """Logits of a LiteRT model for uint8 pixels (N, S, S, 3), in batches."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=None)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    logits: list[np.ndarray] = []
    shape = -1
    for start in range(0, len(pixels), _BATCH):
        batch = np.asarray(pixels[start : start + _BATCH], dtype=np.float32)
        if batch.shape[0] != shape:
            interpreter.resize_tensor_input(inp, list(batch.shape), strict=False)
            interpreter.allocate_tensors()
            shape = batch.shape[0]
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        logits.append(np.asarray(interpreter.get_tensor(out), dtype=np.float64).reshape(-1))
    return np.concatenate(logits) if logits else np.zeros((0,), dtype=np.float64)


def quantize_keras_if_lossless(
    model: keras.Model, data: DecodedSet, *, temperature: float, threshold: float
) -> tuple[keras.Model, dict[str, Any]]:
    """The model to save: an int8-weight copy when it keeps accuracy by the rule, else `model`."""
    small = keras.models.clone_model(model)
    small.set_weights(model.get_weights())
    with warnings.catch_warnings():
        # Layers without weights (Flatten, Dropout, ...) warn that they cannot be quantized.
        warnings.simplefilter("ignore", UserWarning)
        small.quantize("int8")
    info: dict[str, Any] = {
        FLOAT32: {"accuracy": keras_accuracy(model, data, temperature, threshold)},
        "int8": {"accuracy": keras_accuracy(small, data, temperature, threshold)},
    }
    keep = quantization_keeps_accuracy(info[FLOAT32]["accuracy"], info["int8"]["accuracy"])
    info["weights"] = "int8" if keep else FLOAT32
    logger.info(
        "model.keras weights: %s (accuracy float32 %.4f, int8 %.4f)",
        info["weights"],
        info[FLOAT32]["accuracy"],
        info["int8"]["accuracy"],
    )
    return (small if keep else model), info


def keras_accuracy(
    model: keras.Model, data: DecodedSet, temperature: float, threshold: float
) -> float:
    if not len(data):
        return 0.0
    pixels = np.asarray(data.pixels, dtype=np.float32)
    logits = np.asarray(model.predict(pixels, batch_size=_BATCH, verbose=0), dtype=np.float64)
    probs = calibration.sigmoid(logits.reshape(-1) / temperature)
    return float(np.mean((probs >= threshold) == (data.labels >= 0.5)))


def choose_exports(
    model: keras.Model,
    size: int,
    data: DecodedSet,
    *,
    temperature: float,
    threshold: float,
    half: Callable[[keras.Model], keras.Model] | None,
) -> tuple[LiteRTChoice | None, keras.Model, dict[str, Any]]:
    """The LiteRT export and the Keras weights to ship, each kept only where accuracy holds on
    `data` (the validation split); float16 Keras weights are tried where int8 costs accuracy
    and `half` makes such a copy."""
    litert = None
    try:
        litert = choose_litert(
            model, size, data, temperature=temperature, threshold=threshold, split="validate"
        )
    except Exception as exc:  # the bundle still works through Keras
        logger.warning("LiteRT export failed, the bundle ships without it: %s", exc)
    saved, keras_weights = quantize_keras_if_lossless(
        model, data, temperature=temperature, threshold=threshold
    )
    if keras_weights["weights"] == FLOAT32 and half is not None:
        # int8 loses accuracy on conv-heavy networks; float16 storage halves the file.
        copy = half(model)
        accuracy = keras_accuracy(copy, data, temperature, threshold)
        keras_weights[FLOAT16] = {"accuracy": accuracy}
        if quantization_keeps_accuracy(keras_weights[FLOAT32]["accuracy"], accuracy):
            saved, keras_weights["weights"] = copy, FLOAT16
    keras_weights["split"] = "validate"
    return litert, saved, keras_weights
