"""What determines a training run, and what one produced (shared by every kind of run)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detector.bundle import ModelMeta
from training import architectures
from training import augment as aug
from training.config import TrainingConfig
from training.degrade import DegradeConfig

if TYPE_CHECKING:
    import keras

    from training.litert import Judge


@dataclass(frozen=True, slots=True)
class FitSettings:
    """Everything that determines a training run (stored in model.json for reproduction)."""

    arch: str = "resnet_hp"
    image_size: int = 128
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_epochs: int = 1
    patience: int = 6
    seed: int = 1337
    # Exponential moving average of the weights (0 = off), copied into the model at the end
    # of every epoch: a smoother model than the last noisy step of a small-batch run.
    ema_momentum: float = 0.99
    augment: aug.AugmentConfig = field(default_factory=aug.AugmentConfig)
    # Pretrained architectures (training.pretrained) from here on.
    # ImageNet weights file ("" = download with weights="imagenet").
    backbone_weights: str = ""
    # Passes over the training pictures for features: 1 as they are, then N-1 copies each
    # through its own random processing chain (`degrade`).
    feature_passes: int = 3
    # Views scored per picture (detector.views): the whole picture, the native patch, faces.
    views: tuple[str, ...] = ("whole", "patch", "face")
    # Self-blended copies of the real training pictures, labelled manipulated (training.sbi).
    self_blend: bool = True
    # Row weights that take the class signal out of size, sharpness and compression.
    balance_quality: bool = True
    # Inverse L2 strength of the logistic-regression head (chosen by leave-one-source-out).
    head_c: float = 0.01
    # One fake face decides: a picture's score is never below its best face's own.
    face_decides: bool = True
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    # Also hold out each source in turn and record the table (training.pretrained.loso).
    leave_one_source_out: bool = False
    # Test pictures per source scored again through each processing chain (0: not measured).
    invariance_per_source: int = 0
    # Epochs of fine-tuning the upper backbone blocks (training.pretrained.finetune; 0: frozen).
    fine_tune_epochs: int = 0
    # Sources the leave-one-source-out table holds out (empty: every one with training pictures).
    loso_sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.arch not in architectures.ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}")
        unknown = sorted(set(self.views) - {"whole", "patch", "face"})
        if unknown or "whole" not in self.views:
            raise ValueError(f"views must include 'whole' and be whole, patch, face: {self.views}")
        if self.fine_tune_epochs < 0:
            raise ValueError(f"fine-tune epochs must be 0 or more, not {self.fine_tune_epochs}")

    @property
    def pretrained(self) -> bool:
        """True for an architecture built around a pretrained backbone."""
        return architectures.ARCHITECTURES[self.arch].pretrained

    @classmethod
    def from_config(cls, cfg: TrainingConfig, **overrides: Any) -> FitSettings:
        """Settings from the [training] config table, with CLI overrides (None = keep)."""
        base = cls(
            arch=cfg.arch,
            image_size=cfg.image_size,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            patience=cfg.patience,
            seed=cfg.seed,
            backbone_weights=str(cfg.backbone_weights or ""),
            feature_passes=cfg.feature_passes,
        )
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        data = dataclasses.asdict(self)
        data["augment"] = self.augment.to_dict()
        data["degrade"] = self.degrade.to_dict()
        data["views"] = list(self.views)
        data["loso_sources"] = list(self.loso_sources)
        return data


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What a training run produced."""

    bundle_dir: Path
    meta: ModelMeta
    history: dict[str, list[float]]
    run_dir: Path
    best_epoch: int
    stopped_early: bool
    train_seconds: float
    images_per_second: float


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted, calibrated model before export and publication: what each kind of run hands
    to the one shared tail (training.fit)."""

    model: keras.Model
    # Version "pending" and no training record yet: the tail fills both in.
    meta: ModelMeta
    # Facts of the run for model.json `training` (the tail adds the common ones).
    info: dict[str, Any]
    train_labels: np.ndarray
    # What the LiteRT and Keras weight formats are compared by: serving's decisions on the
    # validation split (no choice is ever made on the test split: it holds test-only sources).
    judge: Judge
    # The same model with float16 weights, tried when int8 costs accuracy (None: not offered).
    half: Callable[[keras.Model], keras.Model] | None
