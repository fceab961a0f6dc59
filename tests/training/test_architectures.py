"""Every registered architecture obeys the model contract and survives a bundle round trip."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from detector import modelio
from detector.bundle import ModelMeta, save_bundle
from detector.classifier import Classifier
from training import architectures

SIZE = 32


@pytest.mark.parametrize("name", sorted(architectures.ARCHITECTURES))
def test_builds_and_obeys_the_contract(name: str) -> None:
    model = architectures.build(name, SIZE)
    modelio.check_model_contract(model, SIZE)
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)
    # Any input size is resized inside the model; the output is one float32 logit.
    for side in (SIZE, 50, 17):
        out = model(np.full((2, side, side, 3), 127.0, np.float32), training=False)
        assert tuple(out.shape) == (2, 1)
        assert np.asarray(out).dtype == np.float32
        assert np.all(np.isfinite(np.asarray(out)))


def test_unknown_architecture_and_bad_size_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        architectures.build("vit_huge", SIZE)
    with pytest.raises(ValueError, match="image_size"):
        architectures.build("tiny", 4)


@pytest.mark.parametrize(("name", "layer"), [("resnet_hp", "srm"), ("hp_cnn", "srm_gray")])
def test_high_pass_branch_is_frozen_srm(name: str, layer: str) -> None:
    model = architectures.build(name, SIZE)
    srm = model.get_layer(layer)
    assert not srm.trainable
    assert srm.trainable_weights == []
    # High-pass filters ignore flat areas: a constant image gives zero residuals.
    flat = keras.Model(model.inputs[0], srm.output)(np.full((1, SIZE, SIZE, 3), 90.0, np.float32))
    np.testing.assert_allclose(np.asarray(flat)[:, 3:-3, 3:-3], 0.0, atol=1e-5)
    ramp = np.tile(np.linspace(0, 255, SIZE, dtype=np.float32)[None, :, None], (SIZE, 1, 3))
    ramp_out = keras.Model(model.inputs[0], srm.output)(ramp[None])
    # ... and linear gradients too (second-order residuals), away from the zero-padded border.
    np.testing.assert_allclose(np.asarray(ramp_out)[:, 3:-3, 3:-3], 0.0, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet_hp", "hp_cnn"])
def test_round_trip_through_a_bundle_with_safe_mode(name: str, tmp_path: Path) -> None:
    model = architectures.build(name, SIZE)
    meta = ModelMeta(version=f"{name}-test", arch=name, input_size=SIZE)
    bundle = save_bundle(model, meta, tmp_path / "bundle", export_litert=False)
    loaded = keras.saving.load_model(bundle / "model.keras", safe_mode=True)
    batch = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(loaded(batch, training=False)),
        np.asarray(model(batch, training=False)),
        atol=1e-5,
    )
    scores = Classifier.load(bundle, backend="keras").predict(batch.astype(np.uint8))
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))
