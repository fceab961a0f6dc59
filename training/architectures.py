"""Registry of model architectures; every one obeys the model contract of the SPEC.

Contract: a Keras functional model taking float32 pixels 0..255 of any size `(None, None, None, 3)`,
with `Resizing(S, S)` and `Rescaling(1/255)` inside (so serving can never preprocess differently),
returning ONE float32 logit for "ai". Only built-in layers: bundles load with safe_mode on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers

from detector import modelio

logger = logging.getLogger(__name__)

# Builds the network proper on a (None, S, S, 3) tensor of 0..1 floats; returns the logit tensor.
NetworkBuilder = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Architecture:
    """One registry entry: how to build its network and what it is for."""

    name: str
    network: NetworkBuilder | None
    description: str
    # Built around an ImageNet backbone (training.pretrained.network) instead of `network`.
    pretrained: bool = False


def seed_cnn(x: Any) -> Any:
    """The original notebook network: three conv/pool stages and a dense head (the baseline)."""
    for i, filters in enumerate((32, 64, 128)):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    return modelio.logit_head(x)


# Fixed high-pass ("SRM") filters from steganalysis: they remove image content and keep the
# noise residual, where camera sensor noise and generator upsampling traces live.
_SRM_1ST = (
    np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    / 2.0
)
_SRM_KB = (
    np.array(
        [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
    )
    / 4.0
)
_SRM_KV = (
    np.array(
        [
            [-1, 2, -2, 2, -1],
            [2, -6, 8, -6, 2],
            [-2, 8, -12, 8, -2],
            [2, -6, 8, -6, 2],
            [-1, 2, -2, 2, -1],
        ]
    )
    / 12.0
)


def srm_kernel(channels: int = 3) -> np.ndarray:
    """Depthwise kernel (5, 5, channels, 3): the three SRM filters applied to each channel."""
    bank = np.stack([_SRM_1ST, _SRM_KB, _SRM_KV], axis=-1)  # (5, 5, 3)
    return np.repeat(bank[:, :, None, :], channels, axis=2).astype("float32")


def high_pass(x: Any) -> Any:
    """Frozen SRM residual branch, normalised so its tiny values are on the RGB scale."""
    conv = layers.DepthwiseConv2D(
        5,
        padding="same",
        depth_multiplier=3,
        use_bias=False,
        depthwise_initializer=keras.initializers.Constant(srm_kernel().tolist()),
        trainable=False,
        name="srm",
    )
    return batch_norm(name="srm_bn")(conv(x))


def batch_norm(name: str) -> layers.BatchNormalization:
    """BatchNorm with momentum 0.9: our runs are a few hundred steps, and the default 0.99
    leaves the inference statistics lagging far behind the weights (bad validation scores)."""
    return layers.BatchNormalization(momentum=0.9, name=name)


def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, act: bool = True) -> Any:
    """Conv (no bias) + BatchNorm (+ ReLU)."""
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = batch_norm(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if act else x


def sep_block(x: Any, filters: int, stride: int, name: str) -> Any:
    """Residual block of two depthwise-separable convs; projection shortcut when shape changes."""
    shortcut = x
    y = layers.SeparableConv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_sep1"
    )(x)
    y = batch_norm(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep2")(y)
    y = batch_norm(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = conv_bn(shortcut, filters, 1, stride, f"{name}_proj", act=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def hp_resnet(
    x: Any,
    widths: tuple[int, ...],
    stem: int,
    block: Callable[[Any, int, int, str], Any],
    dropout: float = 0.2,
) -> Any:
    """RGB + SRM residuals -> stride-1 stem -> residual stages (each halves) -> pooled logit."""
    rgb = layers.Rescaling(2.0, offset=-1.0, name="center")(x)
    x = layers.Concatenate(name="rgb_hp")([rgb, high_pass(x)])
    # Stride 1 first: generator traces are pixel-level; downsampling first would erase them.
    x = conv_bn(x, stem, 3, 1, "stem")
    for i, filters in enumerate(widths):
        x = block(x, filters, 2, f"s{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return modelio.logit_head(x)


def resnet_hp(x: Any) -> Any:
    """Compact separable residual net with BatchNorm and a fixed high-pass branch."""
    return hp_resnet(x, (32, 64, 128, 192), 24, sep_block)


def luminance_high_pass(x: Any) -> Any:
    """The three SRM residuals of the grey image (cheap: 3 channels at full resolution)."""
    kernel = srm_kernel(1) / 3.0  # applied to R+G+B summed: the mean of the three channels
    conv = layers.Conv2D(
        3,
        5,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.Constant(np.repeat(kernel, 3, axis=2).tolist()),
        trainable=False,
        name="srm_gray",
    )
    # SRM residuals of 0..1 images are ~0.01: scale them to the range of the RGB input.
    return layers.Rescaling(8.0, name="srm_scale")(conv(x))


def hp_cnn(x: Any) -> Any:
    """The notebook trunk fed with RGB + grey SRM noise residuals (the default).

    Deliberately plain: BatchNorm cost 2-3x per step on this CPU, and within a 15-minute budget
    the fast network that sees more epochs wins. The large dense head is positional, which
    suits aligned faces; shrinking it (1x1 squeeze to 24 channels, or a fourth conv stage) gave
    4-5 MB bundles but cost 2-4 points of validation accuracy (docs/default-model.md). The
    residual channels expose generator noise patterns that RGB convolutions must otherwise
    learn to isolate from image content.
    """
    rgb = layers.Rescaling(2.0, offset=-1.0, name="center")(x)
    x = layers.Concatenate(name="rgb_hp")([rgb, luminance_high_pass(x)])
    for i, filters in enumerate((32, 64, 128)):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    return modelio.logit_head(x)


def tiny(x: Any) -> Any:
    """A few thousand weights: for tests and smoke runs only."""
    x = conv_bn(x, 8, 3, 2, "c0")
    x = conv_bn(x, 16, 3, 2, "c1")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return modelio.logit_head(x)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("seed_cnn", seed_cnn, "the original notebook CNN (baseline)"),
        Architecture("hp_cnn", hp_cnn, "fast plain CNN + grey SRM high-pass branch"),
        Architecture("resnet_hp", resnet_hp, "separable residual net, BatchNorm, SRM branch"),
        Architecture("tiny", tiny, "two conv layers, for tests"),
        Architecture(
            "mobilenet_ms",
            None,
            "ImageNet MobileNet v1, frozen, pooled features of ten depths, linear head",
            pretrained=True,
        ),
    )
}


def build(name: str, image_size: int, weights: str | None = None) -> keras.Model:
    """Build a fresh, untrained model of the named architecture."""
    try:
        arch = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})"
        ) from None
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if arch.pretrained or arch.network is None:
        from training.pretrained.network import build_mobilenet_ms

        return build_mobilenet_ms(image_size, weights)
    inputs = modelio.model_input()
    x = modelio.build_preprocessing(inputs, image_size)
    return keras.Model(inputs, arch.network(x), name=name)
