"""The model under test, model-only throughput per CPU backend, and the notebook's per-file way."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.bundle import META_FILE, TFLITE_FILE, ModelMeta, bundled_model_dir, read_meta
from detector.errors import ModelLoadError
from detector.imageio import LoadLimits, decode

logger = logging.getLogger(__name__)

CPU_BACKENDS = ("keras", "litert")
MODEL_ROUNDS = 3
TRAINING_KEYS = (
    "images_per_second",
    "train_seconds",
    "wall_seconds",
    "epochs_run",
    "feature_rows",
    "cpu_count",
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The bundle being measured and where it came from."""

    bundle: Path
    source: str
    meta: ModelMeta = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "source": self.source,
            "path": str(self.bundle),
            "version": self.meta.version,
            "arch": self.meta.arch,
            "input_size": self.meta.input_size,
            "has_tflite": (self.bundle / TFLITE_FILE).is_file(),
            # Views every picture costs besides one per face (whole view, native patch).
            "picture_views": sum(v != "face" for v in self.meta.views) or 1,
        }


def build_fallback(dest: Path) -> Path:
    """An untrained bundle of the default architecture (weights do not change speed)."""
    from detector.bundle import new_version, save_bundle
    from training.architectures import build
    from training.config import TrainingConfig

    cfg = TrainingConfig()
    logger.info("no bundled model: building an untrained %s (%d px)", cfg.arch, cfg.image_size)
    model = build(cfg.arch, cfg.image_size)
    meta = ModelMeta(version=new_version(cfg.arch), arch=cfg.arch, input_size=cfg.image_size)
    bundle = save_bundle(model, meta, dest)
    if not (bundle / TFLITE_FILE).is_file():
        # Untrained BatchNorm statistics let activations blow up, so save_bundle's Keras/LiteRT
        # agreement check can refuse the export; the speed of a LiteRT model does not depend on
        # its weights, and serving on a CPU uses LiteRT, so the benchmark needs the file.
        from detector.bundle import export_tflite_bytes

        logger.warning("fallback bundle: writing %s without the agreement check", TFLITE_FILE)
        (bundle / TFLITE_FILE).write_bytes(export_tflite_bytes(model, cfg.image_size))
    return bundle


def resolve_model(explicit: Path | None, tmp: Path) -> ModelInfo:
    """--model, else detector/bundled/, else an untrained default-architecture bundle in `tmp`."""
    if explicit is not None:
        bundle, source = explicit.resolve(), "--model"
    elif (bundled_model_dir() / META_FILE).is_file():
        bundle, source = bundled_model_dir(), "bundled default (detector/bundled)"
    else:
        bundle, source = build_fallback(tmp / "fallback-bundle"), "untrained fallback"
    return ModelInfo(bundle=bundle, source=source, meta=read_meta(bundle))


def decoded_batch(variants: Sequence[bytes], size: int, count: int) -> np.ndarray:
    """`count` images decoded by the serving decode path, as one uint8 batch."""
    pixels = [decode(v, size, LoadLimits()).pixels for v in variants]
    return np.stack([pixels[i % len(pixels)] for i in range(count)])


def images_per_s(predict: Any, batch: np.ndarray, min_s: float) -> tuple[float, float]:
    """Steady-state images/s of `predict` on `batch`, and CPU-ms per image (all threads)."""
    predict(batch)
    predict(batch)  # warm-up: tensor allocation, tracing
    calls = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        predict(batch)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s and calls >= 3:
            images = calls * len(batch)
            return images / elapsed, 1000 * (time.process_time() - cpu_start) / images


def load_backends(info: ModelInfo) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Classifier per CPU backend; the error text for a backend that cannot load."""
    from detector.classifier import Classifier

    loaded: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for backend in CPU_BACKENDS:
        try:
            loaded[backend] = Classifier.load(info.bundle, backend=backend, mixed_precision="off")
        except ModelLoadError as exc:
            logger.warning("model-only: backend %s unavailable: %s", backend, exc)
            errors[backend] = {"error": str(exc)}
    return loaded, errors


def model_only(
    info: ModelInfo,
    variants: Sequence[bytes],
    batch_sizes: Sequence[int],
    min_s: float,
    rounds: int = MODEL_ROUNDS,
) -> dict[str, Any]:
    """images/s of Classifier.predict per CPU backend and batch size: best of interleaved rounds.

    On a shared machine other processes only ever slow a measurement down, so the best of a few
    short rounds, with backends and batch sizes interleaved, is the least disturbed figure.
    """
    images = decoded_batch(variants, info.meta.input_size, max(batch_sizes))
    loaded, results = load_backends(info)
    speed: dict[str, dict[str, list[float]]] = {
        b: {str(n): [] for n in batch_sizes} for b in loaded
    }
    cpu: dict[str, dict[str, list[float]]] = {b: {str(n): [] for n in batch_sizes} for b in loaded}
    for _ in range(rounds):
        for backend, classifier in loaded.items():
            for n in batch_sizes:
                ips, cpu_ms = images_per_s(classifier.predict, images[:n], min_s / rounds)
                speed[backend][str(n)].append(round(ips, 2))
                cpu[backend][str(n)].append(round(cpu_ms, 3))
    for backend in loaded:
        results[backend] = {n: max(values) for n, values in speed[backend].items()}
        logger.info("model-only %s: %s images/s", backend, results[backend])
    results["cpu_ms_per_image"] = {
        b: {n: min(values) for n, values in per_batch.items()} for b, per_batch in cpu.items()
    }
    # The call size serving splits a batch's views into: the batch size the ceiling is read at.
    results["views_per_call"] = {b: c.views_per_call for b, c in loaded.items()}
    results["rounds"] = speed
    results["method"] = f"best of {rounds} interleaved rounds of {min_s / rounds:.2f} s per point"
    return results


def reference_per_file(info: ModelInfo, files: Sequence[Path]) -> dict[str, Any]:
    """The notebook's way: load_img + img_to_array + model.predict, one image per call."""
    import keras

    size = info.meta.input_size
    model = keras.saving.load_model(info.bundle / "model.keras", compile=False)

    def screen(path: Path) -> float:
        image = keras.utils.load_img(path, target_size=(size, size))
        batch = keras.utils.img_to_array(image)[None]
        return float(model.predict(batch, verbose=0)[0, 0])

    screen(files[0])  # the first predict call builds Keras' predict function
    start = time.perf_counter()
    for path in files:
        screen(path)
    elapsed = time.perf_counter() - start
    return {
        "files": len(files),
        "images_per_s": round(len(files) / elapsed, 2),
        "ms_per_file": round(1000 * elapsed / len(files), 2),
    }


def training_cost(info: ModelInfo) -> dict[str, Any]:
    """Training images/s and wall time recorded in model.json (the bundled model's, if any)."""
    meta = info.meta
    if not any(k in meta.training for k in TRAINING_KEYS):
        bundled = bundled_model_dir()
        if (bundled / META_FILE).is_file():
            meta = read_meta(bundled)
    recorded = {k: meta.training[k] for k in TRAINING_KEYS if k in meta.training}
    config = meta.training.get("config", {})
    return {
        "recorded": bool(recorded),
        "version": meta.version,
        "arch": meta.arch,
        **recorded,
        "batch_size": config.get("batch_size") if isinstance(config, dict) else None,
        "image_size": meta.input_size,
    }
