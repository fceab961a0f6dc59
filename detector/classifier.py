"""Batch prediction over a model bundle, on Keras (TensorFlow) or LiteRT.

TensorFlow is imported only when the Keras backend is used: the LiteRT path starts in ~0.1 s
and ~60 MB instead of ~4 s and ~700 MB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from detector.bundle import KERAS_FILE, TFLITE_FILE, ModelMeta, read_meta
from detector.decision import UncertainBand, model_label
from detector.errors import ModelLoadError
from detector.faces import FaceFinder, FaceOptions
from detector.labels import Label
from detector.scoring import CombineRule, FaceScore, PictureScore
from detector.views import PATCH, Views, ViewSpec

logger = logging.getLogger(__name__)

BACKENDS: Final[tuple[str, ...]] = ("auto", "keras", "litert")
MIXED_PRECISION_MODES: Final[tuple[str, ...]] = ("auto", "on", "off")
_PROBE_SIZE: Final[int] = 2
# Most views (whole pictures and faces) in one model call, per backend. A call's working
# memory grows with its views (LiteRT: 36 MB for 8 views, 325 MB for 64), and on a CPU a small
# call is also faster per view, its activations staying in cache (LiteRT, 2 cores: 152 views/s
# at 8, 135 at 32, 131 at 64). A GPU wants large calls.
VIEWS_PER_CALL: Final[Mapping[str, int]] = MappingProxyType({"litert": 8, "keras": 64})
# NVIDIA driver on Linux, or the WSL2 GPU bridge that TensorFlow's CUDA build uses on Windows.
_GPU_DRIVER_PATHS: Final[tuple[str, ...]] = ("/proc/driver/nvidia/gpus", "/dev/nvidia0", "/dev/dxg")

# Maps a (N, S, S, 3) uint8 batch to (N,) float64 logits.
LogitFn = Callable[[np.ndarray], np.ndarray]


def gpu_available() -> bool:
    """True when TensorFlow can see a GPU; answers without importing TF when no driver exists."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    # No GPU driver: skip the 4-second TensorFlow import just to learn there is no GPU.
    if not any(Path(p).exists() for p in _GPU_DRIVER_PATHS):
        return False
    try:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # a broken CUDA install must not stop CPU serving
        logger.warning("GPU probe failed; using the CPU", exc_info=True)
        return False


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not available on macOS
        return os.cpu_count() or 1


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable sigmoid(logits / temperature) as float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class Classifier:
    """A loaded, probed model bundle that scores batches of decoded images as P(ai)."""

    def __init__(
        self,
        *,
        bundle_dir: Path,
        meta: ModelMeta,
        backend: str,
        logits_fn: LogitFn,
        threshold: float | None = None,
        uncertain_band: Sequence[float] | None = None,
        face_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.bundle_dir = bundle_dir
        self.meta = meta
        self.backend = backend
        self._logits_fn = logits_fn
        self.threshold = meta.threshold if threshold is None else _check_threshold(threshold)
        # None: the model's own band (if it has one); [] turns it off; [lo, hi] overrides it.
        self.band = UncertainBand.of(
            meta.uncertain_band if uncertain_band is None else uncertain_band
        )
        # Interpreters and traced functions are not meant for concurrent calls.
        self._lock = threading.Lock()
        self.rule = CombineRule.from_meta(meta.combine, meta.temperature)
        # Models trained with a face view get their faces found the way training found them.
        finder: FaceFinder | None = None
        if meta.faces:
            options = FaceOptions.from_dict(meta.faces)
            if face_overrides:
                options = dataclasses.replace(options, **face_overrides)
            finder = FaceFinder(options)
        self.spec = ViewSpec(meta.input_size, finder, patch=PATCH in meta.views)

    @property
    def finder(self) -> FaceFinder | None:
        """The face finder of a model with a face view (None for a whole-picture model)."""
        return self.spec.finder

    @property
    def views_per_call(self) -> int:
        """Most views one model call of `score_pictures` takes on this backend."""
        return VIEWS_PER_CALL[self.backend]

    @property
    def version(self) -> str:
        """The bundle's model version."""
        return self.meta.version

    @property
    def input_size(self) -> int:
        """Side of the square images the model expects."""
        return self.meta.input_size

    @classmethod
    def load(
        cls,
        bundle_dir: Path,
        *,
        backend: str = "auto",
        mixed_precision: str = "auto",
        threshold: float | None = None,
        uncertain_band: Sequence[float] | None = None,
        face_overrides: Mapping[str, Any] | None = None,
    ) -> Classifier:
        """Load and probe a bundle; raises ModelLoadError for anything unusable."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if mixed_precision not in MIXED_PRECISION_MODES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_MODES}")
        if threshold is not None:
            _check_threshold(threshold)
        UncertainBand.of(uncertain_band)  # a bad override fails before the model loads
        bundle_dir = Path(bundle_dir)
        meta = _load_meta(bundle_dir)
        chosen, logits_fn = _load_backend(bundle_dir, meta, backend, mixed_precision)
        classifier = cls(
            bundle_dir=bundle_dir,
            meta=meta,
            backend=chosen,
            logits_fn=logits_fn,
            threshold=threshold,
            uncertain_band=uncertain_band,
            face_overrides=face_overrides,
        )
        with _native_stderr_quiet(not logger.isEnabledFor(logging.INFO)):
            # LiteRT's runtime writes "Created TensorFlow Lite XNNPACK delegate" straight to
            # file descriptor 2 on the first allocation: noise for a one-off command.
            classifier.probe()
        logger.info(
            "loaded model %s (%s, %d px) from %s on %s, threshold %.3f",
            meta.version,
            meta.arch,
            meta.input_size,
            bundle_dir,
            chosen,
            classifier.threshold,
        )
        return classifier

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated P(ai) as float64 (N,) for a (N, S, S, 3) uint8 batch of single views."""
        return sigmoid(self.predict_logits(batch), self.meta.temperature)

    def score_pictures(self, pictures: Sequence[Views]) -> list[PictureScore]:
        """One model call for every view of every picture; each picture's combined score.

        Faces are scored as the whole view is (per-view temperature); the picture's score
        combines the logits by the model's fitted rule.
        """
        if not pictures:
            return []
        stacks = [p.stack() for p in pictures]
        every_view = np.concatenate(stacks)
        # Bounded model calls: a batch of group photos holds up to batch_size x (1 + max_faces)
        # views, and the runtime's memory grows with the call's views.
        step = self.views_per_call
        logits = np.concatenate(
            [
                self.predict_logits(every_view[start : start + step])
                for start in range(0, len(every_view), step)
            ]
        )
        scored: list[PictureScore] = []
        start = 0
        for views, stack in zip(pictures, stacks, strict=True):
            own = logits[start : start + len(stack)]
            start += len(stack)
            scored.append(self._picture(views, own))
        return scored

    def _picture(self, views: Views, logits: np.ndarray) -> PictureScore:
        first_face = 1 if views.patch is None else 2
        face_logits = [float(v) for v in logits[first_face:]]
        patch = float(logits[1]) if views.patch is not None else 0.0
        per_view = sigmoid(logits, self.meta.temperature)
        faces = tuple(
            FaceScore(i, f.box.rounded(), f.box.score, float(per_view[first_face + i]))
            for i, f in enumerate(views.faces)
        )
        combined = self.rule.logit(float(logits[0]), face_logits, patch)
        score = float(sigmoid(np.array([combined]))[0])
        return PictureScore(score=score, whole_score=float(per_view[0]), faces=faces)

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits as float64 (N,) for a (N, S, S, 3) uint8 batch."""
        size = self.meta.input_size
        if batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
            raise ValueError(f"batch must be (N, {size}, {size}, 3), got {batch.shape}")
        if batch.dtype != np.uint8:
            # A silent cast would turn 0..1 floats into black images with confident scores.
            raise ValueError(f"batch must be uint8 pixels 0..255, got {batch.dtype}")
        if batch.shape[0] == 0:
            return np.zeros((0,), dtype=np.float64)
        pixels = np.ascontiguousarray(batch)
        with self._lock:
            logits = self._logits_fn(pixels)
        return np.asarray(logits, dtype=np.float64).reshape(-1)

    def label_for(self, score: float) -> Label:
        """UNCERTAIN inside the band, else AI when score >= threshold, else REAL."""
        return model_label(score, self.threshold, self.band)

    def probe(self) -> np.ndarray:
        """Run a small fixed batch; raises ModelLoadError on bad shape or non-finite scores."""
        size = self.meta.input_size
        batch = np.zeros((_PROBE_SIZE, size, size, 3), dtype=np.uint8)
        batch[1] = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        try:
            scores = self.predict(batch)
        except Exception as exc:
            raise ModelLoadError(f"model {self.meta.version} failed its probe: {exc}") from exc
        if scores.shape != (_PROBE_SIZE,) or not np.all(np.isfinite(scores)):
            raise ModelLoadError(f"model {self.meta.version} probe gave unusable scores {scores}")
        if np.any((scores < 0.0) | (scores > 1.0)):
            raise ModelLoadError(f"model {self.meta.version} probe scores out of range {scores}")
        return scores

    def __repr__(self) -> str:
        return f"Classifier(version={self.version!r}, backend={self.backend!r})"


@contextlib.contextmanager
def _native_stderr_quiet(quiet: bool) -> Iterator[None]:
    """While `quiet`, what native code writes to stderr (fd 2) goes to /dev/null."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    return float(threshold)


def _load_meta(bundle_dir: Path) -> ModelMeta:
    if not bundle_dir.is_dir():
        raise ModelLoadError(f"model bundle folder not found: {bundle_dir}")
    try:
        return read_meta(bundle_dir)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"bad model.json in {bundle_dir}: {exc}") from exc


def _load_backend(
    bundle_dir: Path, meta: ModelMeta, backend: str, mixed_precision: str
) -> tuple[str, LogitFn]:
    """Resolve 'auto' and load the model: GPU -> keras; else litert when possible; else keras."""
    tflite = bundle_dir / TFLITE_FILE
    if backend == "litert":
        if not tflite.is_file():
            raise ModelLoadError(f"backend 'litert' needs {tflite}, which does not exist")
        return "litert", _load_litert(tflite, meta.input_size)
    if backend == "auto" and tflite.is_file() and not gpu_available():
        try:
            return "litert", _load_litert(tflite, meta.input_size)
        except ModelLoadError as exc:
            logger.warning("LiteRT unavailable for %s, falling back to Keras: %s", bundle_dir, exc)
    return "keras", _load_keras(bundle_dir / KERAS_FILE, meta.input_size, mixed_precision)


def _load_litert(path: Path, size: int) -> LogitFn:
    try:
        from ai_edge_litert.interpreter import Interpreter

        # From bytes, not model_path: LiteRT memory-maps a path, and a bundle overwritten in
        # place under a running daemon then breaks every later call.
        content = path.read_bytes()
        interpreter = Interpreter(model_content=content, num_threads=usable_cpus())
    except Exception as exc:
        raise ModelLoadError(f"cannot load LiteRT model {path}: {exc}") from exc
    return _LiteRTRunner(interpreter, size, path, content)


class _LiteRTRunner:
    """Runs a LiteRT interpreter, re-allocating tensors only when the batch size changes."""

    def __init__(self, interpreter: Any, size: int, path: Path, content: bytes) -> None:
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{path} must have one input and one output")
        shape = tuple(int(d) for d in inputs[0]["shape"][1:])
        if shape != (size, size, 3):
            raise ModelLoadError(f"{path} expects {shape} images, model.json says {size} px")
        self._interpreter = interpreter
        self._content = content  # the interpreter reads the model from this buffer
        self._input = int(inputs[0]["index"])
        self._output = int(outputs[0]["index"])
        self._dtype = np.dtype(inputs[0]["dtype"])
        self._batch = -1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n = int(batch.shape[0])
        if n != self._batch:
            self._interpreter.resize_tensor_input(self._input, list(batch.shape), strict=False)
            self._interpreter.allocate_tensors()
            self._batch = n
        self._interpreter.set_tensor(self._input, batch.astype(self._dtype))
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output), dtype=np.float64)


def _load_keras(path: Path, size: int, mixed_precision: str) -> LogitFn:
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        import tensorflow as tf

        use_gpu = gpu_available()
        if use_gpu:
            _enable_gpu_memory_growth(tf)
        device = "/GPU:0" if use_gpu else "/CPU:0"
        with tf.device(device):
            model = _load_keras_model(path)
            _check_keras_contract(model, path, size)
            if _wants_mixed_precision(mixed_precision, use_gpu):
                _switch_to_mixed_float16(model)
            return _keras_logits_fn(tf, model, size, device)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load Keras model {path}: {exc}") from exc


def _load_keras_model(path: Path) -> Any:
    import keras

    # safe_mode: no Lambda layers or arbitrary code from a model file.
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def _check_keras_contract(model: Any, path: Path, size: int) -> None:
    from detector.modelio import check_model_contract

    try:
        check_model_contract(model, size)
    except ValueError as exc:
        raise ModelLoadError(f"{path} breaks the model contract: {exc}") from exc


def _wants_mixed_precision(mode: str, use_gpu: bool) -> bool:
    if mode == "on" and not use_gpu:
        # float16 kernels are slow on CPU; keep CPU results identical to training's float32.
        logger.warning("mixed_precision='on' ignored: no GPU visible, running float32")
    return use_gpu and mode in ("auto", "on")


def _enable_gpu_memory_growth(tf: Any) -> None:
    # Without this TensorFlow reserves all GPU memory for one small model.
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: too late to change, and harmless
            logger.debug("GPU memory growth not changed for %s", gpu.name)


def _switch_to_mixed_float16(model: Any) -> None:
    """float16 compute, float32 variables for every float32 layer but those making outputs.

    A loaded model keeps the dtype policies saved in its config (the global policy only applies
    to layers built afterwards), so the policy is switched on the loaded layers themselves.
    """
    output_layers = {id(t._keras_history.operation) for t in model.outputs}
    switched = 0
    for layer in _walk_layers(model):
        if id(layer) in output_layers or layer.dtype_policy.name != "float32":
            continue
        layer.dtype_policy = "mixed_float16"
        switched += 1
    logger.info("mixed precision: %d layers compute in float16", switched)


def _walk_layers(model: Any) -> list[Any]:
    found: list[Any] = []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            continue
        found.append(layer)
        found.extend(_walk_layers(layer))  # nested models (e.g. a backbone)
    return found


def _keras_logits_fn(tf: Any, model: Any, size: int, device: str) -> LogitFn:
    """A tf.function with one fixed signature: no retracing, no model.predict overhead."""
    spec = tf.TensorSpec(shape=(None, size, size, 3), dtype=tf.uint8, name="image")

    @tf.function(input_signature=[spec], jit_compile=False)
    def logits(images: Any) -> Any:
        # Cast on the device: a uint8 batch is 4x less to copy to a GPU than float32.
        pixels = tf.cast(images, tf.float32)
        return tf.cast(tf.reshape(model(pixels, training=False), [-1]), tf.float32)

    def run(batch: np.ndarray) -> np.ndarray:
        with tf.device(device):
            return np.asarray(logits(tf.constant(batch)).numpy(), dtype=np.float64)

    return run
