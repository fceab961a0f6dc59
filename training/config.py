"""Settings owned by the training package (the `[training]` table of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """How new models are trained and when a candidate may replace the champion."""

    # Training data: folders (Kaggle layout or {real,ai}/), used together; empty to download
    # `kaggle`.
    data: tuple[Path, ...] = ()
    # Kaggle dataset handle downloaded through kagglehub when `data` is "".
    kaggle: str = "philosopher0808/real-vs-ai-generated-faces-dataset"
    # Architecture from the registry (see `deepfake-detector train --help`).
    arch: str = "mobilenet_ms"
    # Square input size of the model in pixels (whole view and each face).
    image_size: int = 224
    # Upper bound on epochs; early stopping usually ends sooner.
    epochs: int = 40
    # Images per training step.
    batch_size: int = 32
    # Peak learning rate of the schedule.
    learning_rate: float = 2e-3
    # Epochs without validation improvement before stopping.
    patience: int = 6
    # Seed for splits, augmentation and initial weights.
    seed: int = 1337
    # ImageNet weights file of a pretrained architecture's backbone, for a first model where
    # the download (weights="imagenet") does not work; retraining starts from the champion.
    backbone_weights: Path | None = None
    # Pretrained architectures: 1 unaugmented + (n - 1) augmented feature passes over train.
    feature_passes: int = field(default=3, metadata={"min": 1})
    # Class folder names of the plain {real,ai}/ layout.
    real_dir: str = "real"
    ai_dir: str = "ai"
    # Folder for decoded-pixel caches ("" = the system temp folder); never inside the repo.
    cache_dir: Path | None = None
    # Promotion gate: the candidate may be at most this much worse overall (accuracy) ...
    promote_margin: float = 0.0
    # ... and at most this much worse on any single source.
    promote_source_margin: float = 0.01
    # Bundles of rejected candidates kept in the model store (newest first); older ones are
    # deleted after each retraining so nightly runs do not fill the disk. Registry rows stay.
    keep_rejected: int = field(default=3, metadata={"min": 0})
