"""The pretrained backbone: ImageNet MobileNet v1, features pooled from several depths.

Shallow layers see pixel-level texture (where generator and camera noise live), deep ones see
content; a linear head over the pooled activations of both generalizes to unseen generators far
better than a from-scratch CNN on a few thousand faces.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
from keras import layers

from detector import modelio

logger = logging.getLogger(__name__)

# Pointwise-conv outputs tapped for features: every stage of the network, shallow to deep.
TAPS: Final[tuple[str, ...]] = (
    "conv_pw_1_relu",
    "conv_pw_2_relu",
    "conv_pw_3_relu",
    "conv_pw_4_relu",
    "conv_pw_5_relu",
    "conv_pw_6_relu",
    "conv_pw_7_relu",
    "conv_pw_9_relu",
    "conv_pw_11_relu",
    "conv_pw_13_relu",
)
FEATURES_NAME: Final[str] = "ms_features"
NORM_NAME: Final[str] = "feature_norm"
BACKBONE_NAME: Final[str] = "mobilenet_taps"
IMAGENET: Final[str] = "imagenet"


def load_mobilenet(image_size: int, weights: str | Path | None) -> keras.Model:
    """MobileNet v1 (alpha 1.0, no top) with ImageNet weights from the hub or from a file.

    `weights="imagenet"` downloads (where the network allows); a path loads the same weights
    from a local `.weights.h5` file; None leaves it untrained (tests only).
    """
    source: str | None = None
    if weights is not None:
        source = IMAGENET if str(weights) == IMAGENET else str(Path(weights).expanduser())
        if source != IMAGENET and not Path(source).is_file():
            raise FileNotFoundError(f"backbone weights not found: {source}")
    base = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    if source == IMAGENET:
        # keras downloads and caches the file; the explicit form keeps one code path.
        base = keras.applications.MobileNet(
            include_top=False, weights=IMAGENET, input_shape=(image_size, image_size, 3)
        )
    elif source is not None:
        base.load_weights(source)
        logger.info("loaded backbone weights from %s", source)
    return base


def taps_model(base: keras.Model) -> keras.Model:
    """A model returning the tapped activations of `base`."""
    outputs = [base.get_layer(name).output for name in TAPS]
    return keras.Model(base.input, outputs, name=BACKBONE_NAME)


def features(x: Any, backbone: keras.Model) -> Any:
    """Pooled multi-depth features of 0..1 images: per tapped map, the spatial mean of each
    channel and of its square (second moment: how much a channel's response varies, where
    upsampling and sensor-noise traces show; measured +0.003-0.009 ROC AUC over means alone)."""
    x = layers.Rescaling(2.0, offset=-1.0, name="mobilenet_preprocess")(x)  # = preprocess_input
    taps = backbone(x)
    pooled = []
    for name, t in zip(TAPS, taps, strict=True):
        pooled.append(layers.GlobalAveragePooling2D(name=f"gap_{name}")(t))
        squared = layers.Multiply(name=f"sq_{name}")([t, t])
        pooled.append(layers.GlobalAveragePooling2D(name=f"gap2_{name}")(squared))
    return layers.Concatenate(name=FEATURES_NAME)(pooled)


def head(feats: Any) -> Any:
    """Standardisation, then one linear unit: a logistic regression on the pooled features.

    Linear on purpose: on frozen features a linear probe generalizes to sources it never saw
    better than heavier heads fitted to the validation split (DETECTION.md). The
    standardisation is its own layer, fitted on the training features.
    """
    # float32 whatever the storage policy: variances near 1e-8 underflow in float16.
    x = layers.Normalization(axis=-1, name=NORM_NAME, dtype="float32")(feats)
    return modelio.logit_head(x)


def build_mobilenet_ms(image_size: int, weights: str | Path | None) -> keras.Model:
    """The full bundle model: contract preprocessing, frozen backbone, pooled features, head."""
    backbone = taps_model(load_mobilenet(image_size, weights))
    backbone.trainable = False
    inputs = modelio.model_input()
    x = modelio.build_preprocessing(inputs, image_size)
    return keras.Model(inputs, head(features(x, backbone)), name="mobilenet_ms")


def set_head(
    model: keras.Model, mean: np.ndarray, variance: np.ndarray, coef: np.ndarray, bias: float
) -> None:
    """Put a fitted standardisation and linear unit into the model's head layers."""
    norm = model.get_layer(NORM_NAME)
    norm.adapt_mean.assign(np.asarray(mean, np.float32))
    norm.adapt_variance.assign(np.asarray(variance, np.float32))
    norm.count.assign(1)
    # Normalization computes from its adapt_* weights only when its state is finalized.
    norm.finalize_state()
    kernel = np.asarray(coef, np.float32).reshape(-1, 1)
    model.get_layer(modelio.LOGIT_NAME).set_weights([kernel, np.array([bias], np.float32)])


def copy_head(source: keras.Model, dest: keras.Model) -> None:
    """Weights of the head layers from one model into another (by layer name)."""
    for name in (NORM_NAME, modelio.LOGIT_NAME):
        dest.get_layer(name).set_weights(source.get_layer(name).get_weights())
    dest.get_layer(NORM_NAME).finalize_state()


def float16_copy(model: keras.Model, image_size: int) -> keras.Model:
    """The same model with float16 weights (half the file), standardisation and logit float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float16")
    try:
        half = build_mobilenet_ms(image_size, None)
    finally:
        keras.config.set_dtype_policy(previous)
    half.set_weights(model.get_weights())
    copy_head(model, half)  # finalizes the standardisation's state
    return half


def feature_model(model: keras.Model) -> keras.Model:
    """The part of a mobilenet_ms model up to its pooled features (shares its weights)."""
    return keras.Model(model.inputs, model.get_layer(FEATURES_NAME).output, name="features")


def feature_width(model: keras.Model) -> int:
    """Length of the pooled feature vector."""
    return int(model.get_layer(FEATURES_NAME).output.shape[-1])
