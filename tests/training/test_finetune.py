"""Fine-tuning the upper backbone blocks on cached conv_pw_11 maps (training.pretrained.finetune).

What must hold: the maps reproduce the cached features; tuning changes only the conv_pw_13
columns and only the upper blocks' convolutions (batch statistics fixed); the features the
tuning recomputes from the maps are the ones the tuned model computes from the pixels (training
and serving cannot drift); each leave-one-source-out fold tunes without its source.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_loso import _dataset, loso_command
from training.datasets import load_layout
from training.settings import FitSettings
from watcher import cli

pytestmark = pytest.mark.slow


def _settings(weights: Path, **overrides: object) -> FitSettings:
    base = FitSettings(
        arch="mobilenet_ms",
        image_size=64,
        backbone_weights=str(weights),
        feature_passes=2,
        head_c=0.1,
        fine_tune_epochs=2,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def test_tuned_features_are_the_tuned_models_own(tmp_path: Path, normalised_weights: Path) -> None:
    from training.pretrained import features, finetune
    from training.pretrained.run import Backbone, initial_model

    splits = load_layout(_dataset(tmp_path / "data"))
    settings = _settings(normalised_weights)
    model = initial_model(settings, None)
    before = {k: [w.copy() for w in v] for k, v in finetune.backbone_weights(model).items()}
    backbone = Backbone(splits, settings, model, tmp_path / "cache")
    assert backbone.maps is not None
    assert {len(backbone.maps[k]) for k in backbone.every} and all(
        len(backbone.maps[k]) == len(backbone.every[k].rows) for k in backbone.every
    )
    maps_files = sorted((tmp_path / "cache").glob("*-maps-conv_pw_11_relu.npy"))
    assert len(maps_files) == 5  # train: plain, degraded, self-blend; validate; test
    # Maps that are not these rows (here: in another order) are refused.
    maps = backbone.maps["validate"]
    shuffled = finetune.MapStore(maps.parts, maps.positions[::-1].copy())
    with pytest.raises(RuntimeError, match="maps do not reproduce"):
        finetune.check_maps(model, backbone.start, backbone.every["validate"], shuffled)

    data, tuned = backbone.tuned(["gen_b"])
    assert tuned is not None
    # The model is untouched until the tuned weights are applied.
    for name, weights in finetune.backbone_weights(model).items():
        assert all(np.array_equal(a, b) for a, b in zip(weights, before[name], strict=True))
    width = backbone.every["train"].rows.feats.shape[1]
    cols = finetune.tuned_columns(width, model)
    for name in ("train", "validate", "test"):
        old, new = backbone.every[name].rows.feats, data[name].rows.feats
        others = np.r_[cols]
        np.testing.assert_array_equal(np.delete(old, others, 1), np.delete(new, others, 1))
        spread = np.maximum(old[:, cols].std(axis=0), 1e-6)
        # 20 times what the float16 maps alone change (check_maps: about 1e-4).
        assert np.median(np.abs(old[:, cols] - new[:, cols]) / spread) > 0.002
    # Convolutions moved; batch statistics (moving mean and variance) did not.
    assert not np.allclose(tuned["conv_pw_13"][0], before["conv_pw_13"][0])
    assert not np.allclose(tuned["conv_dw_12"][0], before["conv_dw_12"][0])
    for bn in ("conv_dw_12_bn", "conv_pw_12_bn", "conv_dw_13_bn", "conv_pw_13_bn"):
        for got, was in zip(tuned[bn], before[bn], strict=True):
            np.testing.assert_array_equal(got, was)

    # Serving's features of the tuned model = the features tuning recomputed from the maps.
    finetune.apply(model, tuned)
    extract = features.Extractor(model, settings.image_size)
    spec, passes = _render(settings)
    test = splits.split("test")
    served = features.pass_rows(test, features.PLAIN, spec, passes, extract, None)
    want = data["test"].rows.feats
    spread = np.maximum(want[:, cols].std(axis=0), 1e-6)
    error = np.median(np.abs(served.feats[:, cols] - want[: len(served), cols]) / spread)
    assert len(served) == len(want) and error < 0.05


def _render(settings: FitSettings) -> tuple[object, object]:
    from training.pretrained.run import render_settings

    return render_settings(settings)


def test_loso_fine_tunes_each_fold_without_its_source(
    tmp_path: Path, normalised_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, out = loso_command(
        tmp_path, normalised_weights, "--fine-tune-epochs", "1", "--loso-sources", "cam_a,gen_b"
    )
    assert cli.main(args) == 0
    table = json.loads(out.read_text())
    assert set(table["sources"]) == {"cam_a", "gen_b"}
    assert table["settings"]["fine_tune_epochs"] == 1
    assert table["settings"]["loso_sources"] == ["cam_a", "gen_b"]
    assert "cam_a" in capsys.readouterr().out

    unknown = [*args[:-4], "--loso-sources", "nowhere", "--out", str(out)]
    assert cli.main(unknown) != 0
    assert "nowhere" in capsys.readouterr().err


def test_fine_tune_epochs_must_not_be_negative(normalised_weights: Path) -> None:
    with pytest.raises(ValueError, match="fine-tune epochs"):
        _settings(normalised_weights, fine_tune_epochs=-1)


def test_a_fine_tuned_bundle_serves_what_it_was_measured_with(
    tmp_path: Path, normalised_weights: Path
) -> None:
    import keras

    from detector.bundle import read_meta
    from training.evaluate import evaluate
    from training.fit import train
    from training.pretrained import finetune
    from training.pretrained.network import BACKBONE_NAME, load_mobilenet

    splits = load_layout(_dataset(tmp_path / "data"))
    # A strong L2 keeps the logits small, so the loss (and every step) is far from zero on
    # these easily separated pictures.
    settings = _settings(normalised_weights, fine_tune_epochs=1, head_c=1e-4)
    result = train(
        splits, settings, dest=tmp_path / "bundle", run_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    meta = read_meta(result.bundle_dir)
    assert meta.training["fine_tune"]["epochs"] == 1
    assert meta.training["fine_tune"]["layers"] == ["conv_pad_12", "conv_pw_13_relu"]
    saved = keras.saving.load_model(result.bundle_dir / "model.keras", compile=False)
    backbone = saved.get_layer(BACKBONE_NAME)
    start = load_mobilenet(64, normalised_weights)

    def moved(name: str) -> float:
        saved_weights = backbone.get_layer(name).get_weights()[0].astype(np.float32)
        return float(np.abs(saved_weights - start.get_layer(name).get_weights()[0]).mean())

    # The bundle may store float16 weights: the frozen blocks differ by rounding alone, the
    # tuned ones by the optimiser's steps (about 1e-4 each), many times more.
    assert moved("conv_pw_13") > 10 * moved("conv_pw_11")
    assert moved("conv_dw_12") > 10 * moved("conv_dw_11")
    assert set(finetune.UPPER_LAYERS) <= {layer.name for layer in backbone.layers}
    # Served end to end (decode, views, the bundle's LiteRT model), the test split scores as
    # the tuned rows measured it.
    report = evaluate(result.bundle_dir, splits.test)
    assert report.metrics["n"] == meta.metrics["test"]["n"]
    assert report.metrics["roc_auc"] == pytest.approx(meta.metrics["test"]["roc_auc"], abs=0.02)
