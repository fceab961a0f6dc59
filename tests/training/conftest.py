"""Tiny real datasets on disk in the three layouts the training package reads."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Two "sources" per class, like the real dataset's manifest.
SOURCES = {0: ("cam_a", "cam_b"), 1: ("gen_a", "gen_b")}
SPLIT_DIRS = ("train", "validate", "test")

DatasetMaker = Callable[..., Path]


def write_face(path: Path, label: int, seed: int, size: int = 40) -> None:
    """A learnable stand-in image: real = dark noisy texture, ai = bright smooth texture."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(30, 90) if label == 0 else rng.uniform(160, 230)
    noise = rng.normal(0, 18 if label == 0 else 6, (size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


def make_kaggle(
    root: Path,
    per_class: tuple[int, int, int] = (12, 6, 6),
    val_name: str = "validate",
    manifest: bool = True,
) -> Path:
    """{train,<val_name>,test}/{0,1}/*.jpg (+ manifest.csv with sources)."""
    rows: list[dict[str, object]] = []
    seed = 0
    for split, count in zip(SPLIT_DIRS, per_class, strict=True):
        folder = val_name if split == "validate" else split
        for label in (0, 1):
            for i in range(count):
                source = SOURCES[label][i % 2]
                rel = f"{folder}/{label}/{source}_{i:03d}.jpg"
                write_face(root / rel, label, seed)
                seed += 1
                rows.append(
                    {
                        "path": rel,
                        "split": split,
                        "label": label,
                        "class": "real" if label == 0 else "ai",
                        "source": source,
                        "generator": "real" if label == 0 else source,
                    }
                )
    if manifest:
        _write_manifest(root, rows)
    return root


def make_plain(
    root: Path,
    per_source: int = 10,
    real_dir: str = "real",
    ai_dir: str = "ai",
    manifest: bool = True,
) -> Path:
    """{real,ai}/*.jpg with a manifest naming two sources per class."""
    rows: list[dict[str, object]] = []
    seed = 1000
    for label, folder in enumerate((real_dir, ai_dir)):
        for source in SOURCES[label]:
            for i in range(per_source):
                rel = f"{folder}/{source}_{i:03d}.jpg"
                write_face(root / rel, label, seed)
                seed += 1
                rows.append(
                    {
                        "path": rel,
                        "split": "",
                        "label": label,
                        "class": "real" if label == 0 else "ai",
                        "source": source,
                        "generator": "",
                    }
                )
    if manifest:
        _write_manifest(root, rows)
    return root


def _write_manifest(root: Path, rows: list[dict[str, object]]) -> None:
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["path", "split", "label", "class", "source", "generator"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    """A small Kaggle-layout dataset with manifest."""
    return make_kaggle(tmp_path / "kaggle")


@pytest.fixture
def plain_dir(tmp_path: Path) -> Path:
    """A small plain {real,ai}/ dataset with manifest."""
    return make_plain(tmp_path / "plain")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private decoded-pixel cache folder (tests never touch the shared temp cache)."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNet weights file with random values: the file-loading path without ImageNet."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet.weights.h5"
    keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(64, 64, 3)
    ).save_weights(path)
    return path


@pytest.fixture(scope="session")
def normalised_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random MobileNet weights whose batch statistics are set from real activations (layer by
    layer, as data-dependent initialisation does), so deep activations neither vanish nor
    explode: what fine-tuning tests need to see a change in the deepest features."""
    import keras

    model = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(7)
    images = rng.uniform(-1, 1, (16, 64, 64, 3)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(model.input, layer.input)(images, training=False)
            x = np.asarray(inputs, np.float64)
            gamma, beta, _, _ = layer.get_weights()
            mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2)) + 1e-3
            layer.set_weights([gamma, beta, mean.astype(np.float32), var.astype(np.float32)])
    path = tmp_path_factory.mktemp("weights") / "mobilenet-normalised.weights.h5"
    model.save_weights(path)
    return path
