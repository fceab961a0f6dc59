"""Building blocks every architecture uses, so preprocessing lives in exactly one place.

Model contract: input (None, None, None, 3) float32 pixel values 0..255; inside the model
Resizing(S, S) then Rescaling(1/255); output one float32 logit for "ai".
"""

from __future__ import annotations

from typing import Any, Final

import keras

INPUT_NAME: Final[str] = "image"
RESIZE_NAME: Final[str] = "preprocess_resize"
RESCALE_NAME: Final[str] = "preprocess_rescale"
LOGIT_NAME: Final[str] = "ai_logit"


def model_input() -> Any:
    """The contract's input: any spatial size, 3 channels, float32 pixel values 0..255."""
    return keras.Input(shape=(None, None, 3), dtype="float32", name=INPUT_NAME)


def build_preprocessing(inputs: Any, size: int) -> Any:
    """Resizing(size, size) then Rescaling(1/255): the only preprocessing a model may have."""
    x = keras.layers.Resizing(size, size, interpolation="bilinear", name=RESIZE_NAME)(inputs)
    return keras.layers.Rescaling(1.0 / 255.0, name=RESCALE_NAME)(x)


def logit_head(features: Any) -> Any:
    """One-unit 'ai' logit head, forced to float32 so mixed precision cannot overflow it."""
    return keras.layers.Dense(1, dtype="float32", name=LOGIT_NAME)(features)


def check_model_contract(model: keras.Model, size: int) -> None:
    """Raise ValueError when a model breaks the bundle's model contract."""
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1 or shapes[0][-1] != 3 or len(shapes[0]) != 4:
        raise ValueError(f"model must take one (None, None, None, 3) input, got {shapes}")
    outputs = [tuple(t.shape) for t in model.outputs]
    if len(outputs) != 1 or outputs[0][1:] != (1,):
        raise ValueError(f"model must output one logit per image, got {outputs}")
    resizing = [layer for layer in model.layers if isinstance(layer, keras.layers.Resizing)]
    if not resizing or (resizing[0].height, resizing[0].width) != (size, size):
        raise ValueError(f"model must start with Resizing({size}, {size})")
    if not any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers):
        raise ValueError("model must contain Rescaling(1/255) after Resizing")
