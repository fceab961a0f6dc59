"""Writing a trained model out: the bundle folder, and the facts about the run stored in it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from detector.bundle import ModelMeta, save_bundle
from detector.modelio import check_model_contract
from training import litert as litert_export


def environment() -> dict[str, Any]:
    """Software and machine facts stored with a model (for reproduction)."""
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "gpus": len(tf.config.list_logical_devices("GPU")),
    }


def publish_vetted(
    model: keras.Model,
    meta: ModelMeta,
    dest: Path,
    litert: litert_export.LiteRTChoice | None,
    *,
    overwrite: bool,
    private: bool,
) -> Path:
    """publish_bundle with the LiteRT model chosen at training time (or none)."""
    return publish_bundle(
        model,
        meta,
        dest,
        overwrite=overwrite,
        export_litert=False,
        private=private,
        tflite=litert.content if litert is not None else None,
    )


def publish_bundle(
    model: keras.Model,
    meta: ModelMeta,
    dest: Path,
    *,
    overwrite: bool = False,
    export_litert: bool = True,
    private: bool = True,
    tflite: bytes | None = None,
) -> Path:
    """save_bundle to `dest`, replacing an existing bundle only with overwrite.

    The new bundle is complete before the old one is moved aside: never a half-replaced folder.
    A model that breaks the model contract (serving would refuse it) is never published.
    """
    check_model_contract(model, meta.input_size)
    dest = Path(dest)
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        if dest.exists():
            dest.rmdir()
        return save_bundle(
            model, meta, dest, export_litert=export_litert, private=private, tflite=tflite
        )
    if not overwrite:
        raise FileExistsError(f"{dest} already exists (use --overwrite to replace it)")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    new = save_bundle(
        model,
        meta,
        staging / "bundle",
        export_litert=export_litert,
        private=private,
        tflite=tflite,
    )
    old = staging / "old"
    os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return dest
