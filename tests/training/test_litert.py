"""The export choice: int8 (or float16) weights only when serving's decisions stay within 0.2
points overall and 0.5 points on every source of the validation split."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from detector.bundle import KERAS_FILE, TFLITE_FILE, read_meta
from detector.classifier import Classifier
from training.datasets import Sample
from training.litert import (
    DYNAMIC_INT8,
    FLOAT32,
    choose_litert,
    keeps_accuracy,
    litert_logits,
    quantize_keras_if_lossless,
    whole_view_judge,
)
from training.pipeline import DecodedSet

from ..conftest import BRIGHT, DARK, TINY_SIZE


def brightness_set(n: int = 40, seed: int = 3) -> DecodedSet:
    """Noisy bright (ai) and dark (real) images: what the tiny model learned to tell apart."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 1, BRIGHT[0], DARK[0])
    noise = rng.normal(0, 12, (n, TINY_SIZE, TINY_SIZE, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    samples = tuple(
        Sample(Path(f"img{i}.png"), int(label), "test", "synthetic")
        for i, label in enumerate(labels)
    )
    return DecodedSet(pixels, labels.astype(np.float32), ("synthetic",) * n, samples)


@pytest.mark.parametrize(
    ("float_acc", "int8_acc", "keep"),
    [(0.9, 0.9, True), (0.9, 0.901, True), (0.9, 0.898, True), (0.9, 0.8979, False)],
)
def test_int8_is_kept_only_within_two_tenths_of_a_point(
    float_acc: float, int8_acc: float, keep: bool
) -> None:
    assert keeps_accuracy({"accuracy": float_acc}, {"accuracy": int8_acc}) is keep


def test_and_within_half_a_point_on_every_source() -> None:
    # Overall unchanged, one source down a point: the choice a one-number rule would get wrong.
    reference = {"accuracy": 0.9, "per_source": {"a": 0.9, "b": 0.9}}
    assert keeps_accuracy(reference, {"accuracy": 0.9, "per_source": {"a": 0.91, "b": 0.895}})
    assert not keeps_accuracy(reference, {"accuracy": 0.9, "per_source": {"a": 0.91, "b": 0.89}})


def test_choice_measures_both_exports_and_ships_one_that_serves(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    model = keras.saving.load_model(tiny_bundle / KERAS_FILE, safe_mode=True)
    meta = read_meta(tiny_bundle)
    data = brightness_set()
    judge = whole_view_judge(data, temperature=1.0, threshold=0.5)
    choice = choose_litert(model, TINY_SIZE, judge, split="validate")
    info = choice.info
    assert info["quantization"] == choice.quantization
    accuracies = {kind: info[kind]["accuracy"] for kind in (FLOAT32, DYNAMIC_INT8)}
    assert accuracies[FLOAT32] == 1.0  # the tiny model separates these perfectly
    kept = keeps_accuracy(info[FLOAT32], info[DYNAMIC_INT8])
    assert (choice.quantization == DYNAMIC_INT8) is kept
    assert info[FLOAT32]["per_source"] == {"synthetic": 1.0}
    assert len(choice.content) == info[choice.quantization]["bytes"]
    json.dumps(info)
    # The chosen bytes are what the service runs: same labels as Keras on these images.
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("model.json", KERAS_FILE):
        (bundle / name).write_bytes((tiny_bundle / name).read_bytes())
    (bundle / TFLITE_FILE).write_bytes(choice.content)
    served = Classifier.load(bundle, backend="litert").predict(data.pixels)
    assert [s >= meta.threshold for s in served] == [bool(label) for label in data.labels]


def test_litert_logits_of_float_export_equal_keras(tiny_bundle: Path) -> None:
    model = keras.saving.load_model(tiny_bundle / KERAS_FILE, safe_mode=True)
    data = brightness_set(n=70)  # more than one batch of 64, and a ragged last batch
    content = (tiny_bundle / TFLITE_FILE).read_bytes()
    expected = np.asarray(model(data.pixels.astype(np.float32), training=False)).reshape(-1)
    np.testing.assert_allclose(litert_logits(content, data.pixels), expected, atol=1e-3)


def test_keras_weights_are_quantized_only_by_the_rule(tiny_bundle: Path, tmp_path: Path) -> None:
    model = keras.saving.load_model(tiny_bundle / KERAS_FILE, safe_mode=True)
    before = [w.copy() for w in model.get_weights()]
    data = brightness_set()
    saved, info = quantize_keras_if_lossless(model, whole_view_judge(data, 1.0, 0.5))
    assert info[FLOAT32]["accuracy"] == 1.0
    kept = keeps_accuracy(info[FLOAT32], info["int8"])
    assert info["weights"] == ("int8" if kept else FLOAT32)
    assert (saved is not model) == (info["weights"] == "int8")
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # the float model is left as it was
    # What is saved loads in safe mode and labels these images as the float model does.
    saved.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    logits = np.asarray(reloaded.predict(data.pixels.astype(np.float32), verbose=0)).reshape(-1)
    assert list(logits >= 0) == [bool(label) for label in data.labels]
