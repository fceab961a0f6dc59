"""Model bundles: a folder with model.keras + model.json (+ optional model.tflite).

The json travels with the weights so serving derives input size, threshold and calibration from
the model itself instead of copying constants (timm's pretrained_cfg idea). Reading metadata never
imports TensorFlow; saving does, lazily.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from detector.atomic import write_atomic

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

KERAS_FILE: Final[str] = "model.keras"
META_FILE: Final[str] = "model.json"
TFLITE_FILE: Final[str] = "model.tflite"
FORMAT_VERSION: Final[int] = 1
# View kinds a model may score (detector.views).
VIEW_KINDS: Final[tuple[str, ...]] = ("whole", "patch", "face")
# A LiteRT export that disagrees with Keras by more than this is not shipped.
TFLITE_TOLERANCE: Final[float] = 1e-3


def utc_now_iso() -> str:
    """Current UTC time as ISO-8601 with seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True, slots=True)
class ModelMeta:
    """Everything serving needs to know about a model, stored beside it as model.json."""

    version: str
    arch: str
    input_size: int
    class_names: tuple[str, ...] = ("real", "ai")
    threshold: float = 0.5
    temperature: float = 1.0
    # Scores with lo <= score < hi are labelled `uncertain` (None: no band, e.g. an older model),
    # chosen on the validation split so that each confident label reaches `uncertain_precision`.
    uncertain_band: tuple[float, float] | None = None
    uncertain_precision: float | None = None
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # Face view settings (detector.faces.FaceOptions.to_dict); {} = whole-picture model only.
    faces: dict[str, Any] = field(default_factory=dict)
    # How whole and face scores make the picture's (detector.scoring); {} = whole view only.
    combine: dict[str, Any] = field(default_factory=dict)
    # View kinds the model scores (detector.views: whole, patch, face); () = an older model:
    # the whole view, and the faces when `faces` is set.
    views: tuple[str, ...] = ()
    created_at: str = field(default_factory=utc_now_iso)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (class_names as a list)."""
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["views"] = list(self.views)
        if self.uncertain_band is not None:
            data["uncertain_band"] = list(self.uncertain_band)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelMeta:
        """Build from parsed json; raises ValueError naming the offending field."""
        if not isinstance(data, dict):
            raise ValueError(f"model metadata must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("ignoring unknown model.json fields: %s", ", ".join(unknown))
        missing = [name for name in ("version", "arch", "input_size") if name not in data]
        if missing:
            raise ValueError(f"model metadata field {missing[0]!r} is missing")
        kwargs = {k: v for k, v in data.items() if k in known}
        for name in ("class_names", "views"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        for name in ("threshold", "temperature"):
            value = kwargs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                kwargs[name] = float(value)
        if isinstance(kwargs.get("uncertain_band"), list):
            kwargs["uncertain_band"] = tuple(kwargs["uncertain_band"])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # e.g. a field given with the wrong structure
            raise ValueError(f"invalid model metadata: {exc}") from exc


def _validate(meta: ModelMeta) -> None:
    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"model metadata field {name!r} {why} (got {getattr(meta, name)!r})")

    if not isinstance(meta.version, str) or not meta.version.strip():
        raise bad("version", "must be a non-empty string")
    if not isinstance(meta.arch, str) or not meta.arch.strip():
        raise bad("arch", "must be a non-empty string")
    if not _is_int(meta.input_size) or not 8 <= meta.input_size <= 4096:
        raise bad("input_size", "must be an integer between 8 and 4096")
    names = meta.class_names
    if (
        not isinstance(names, tuple)
        or len(names) != 2
        or not all(isinstance(n, str) for n in names)
    ):
        raise bad("class_names", "must be two strings (index 0 = real, 1 = ai)")
    if not _is_float(meta.threshold) or not 0.0 <= meta.threshold <= 1.0:
        raise bad("threshold", "must be a number between 0 and 1")
    if not _is_float(meta.temperature) or not meta.temperature > 0.0:
        raise bad("temperature", "must be a finite number greater than 0")
    _validate_band(meta)
    if not isinstance(meta.data_fingerprint, str):
        raise bad("data_fingerprint", "must be a string")
    for name in ("metrics", "training", "faces", "combine"):
        if not isinstance(getattr(meta, name), dict):
            raise bad(name, "must be a JSON object")
    if not isinstance(meta.views, tuple) or not set(meta.views) <= set(VIEW_KINDS):
        raise bad("views", f"must be a list of view kinds ({', '.join(VIEW_KINDS)})")
    _validate_created_at(meta.created_at)
    if not _is_int(meta.format_version) or not 1 <= meta.format_version <= FORMAT_VERSION:
        raise bad("format_version", f"must be an integer between 1 and {FORMAT_VERSION}")


def _validate_band(meta: ModelMeta) -> None:
    band, precision = meta.uncertain_band, meta.uncertain_precision
    if band is not None and not (
        isinstance(band, tuple)
        and len(band) == 2
        and all(_is_float(v) for v in band)
        and 0.0 <= band[0] <= band[1] <= 1.0
    ):
        raise ValueError(
            "model metadata field 'uncertain_band' must be [lo, hi] with 0 <= lo <= hi <= 1"
            f" (got {band!r})"
        )
    if precision is not None and not (_is_float(precision) and 0.0 < precision <= 1.0):
        raise ValueError(
            "model metadata field 'uncertain_precision' must be a number in (0, 1]"
            f" (got {precision!r})"
        )


def _validate_created_at(value: object) -> None:
    try:
        if not isinstance(value, str):
            raise TypeError
        datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"model metadata field 'created_at' must be an ISO-8601 timestamp (got {value!r})"
        ) from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: object) -> bool:
    # ints are accepted too (threshold=1 is a valid number), bools are not.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_meta(bundle_dir: Path) -> ModelMeta:
    """Read and validate model.json; OSError/ValueError on a missing or bad file."""
    path = Path(bundle_dir) / META_FILE
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    return ModelMeta.from_dict(data)


def write_meta(meta: ModelMeta, bundle_dir: Path) -> Path:
    """Write model.json atomically (temp file + rename); returns its path."""
    payload = json.dumps(meta.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_atomic(Path(bundle_dir) / META_FILE, payload)


def bundled_model_dir() -> Path:
    """Folder of the default model shipped inside the package."""
    return Path(__file__).resolve().parent / "bundled"


def new_version(arch: str) -> str:
    """A unique, sortable version string such as 'resnet_hp-20261125-101500-a1b2'."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{arch}-{stamp}-{secrets.token_hex(2)}"


def save_bundle(
    model: keras.Model,
    meta: ModelMeta,
    dest: Path,
    *,
    export_litert: bool = True,
    private: bool = True,
    tflite: bytes | None = None,
) -> Path:
    """Write a complete bundle to `dest` atomically (temp sibling + rename); returns dest.

    `private` keeps the store and the bundle to the owner (0700 folders); models trained on
    inbox images carry information about them. `tflite` is a LiteRT model the caller already
    vetted (e.g. a quantized one checked on test data); without it a float32 export is made
    and checked against Keras.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"bundle folder already exists: {dest}")
    folder_mode = 0o700 if private else 0o755
    if not dest.parent.exists():
        dest.parent.mkdir(mode=folder_mode, parents=True)
    # A sibling on the same filesystem, so the final rename is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        os.chmod(tmp, folder_mode)
        model.save(tmp / KERAS_FILE)
        write_meta(meta, tmp)
        if tflite is not None:
            (tmp / TFLITE_FILE).write_bytes(tflite)
        elif export_litert:
            _try_export_tflite(model, meta.input_size, tmp)
        for path in tmp.iterdir():
            os.chmod(path, 0o600 if private else 0o644)
        _fsync_tree(tmp)
        os.rename(tmp, dest)  # fails instead of clobbering if dest appeared meanwhile
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved model bundle %s (%s) to %s", meta.version, meta.arch, dest)
    return dest


def _try_export_tflite(model: keras.Model, size: int, bundle_dir: Path) -> None:
    try:
        tflite = export_tflite_bytes(model, size)
        check_tflite_matches(model, tflite, size)
    except Exception as exc:  # the bundle is still usable through Keras
        logger.warning("LiteRT export failed, bundle ships without %s: %s", TFLITE_FILE, exc)
        return
    (bundle_dir / TFLITE_FILE).write_bytes(tflite)


def export_tflite_bytes(
    model: keras.Model, size: int, *, quantize: bool = False, float16: bool = False
) -> bytes:
    """Convert via SavedModel (from_concrete_functions yields a NaN model with Keras 3).

    `quantize`: dynamic-range quantization (int8 weights, float activations): about 4x smaller
    and, on CPU, about twice as fast; its accuracy must be checked by the caller.
    `float16`: weights stored as float16 (half the size), computed in float32 as before.
    """
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="savedmodel-") as tmp:
        saved = Path(tmp) / "saved_model"
        # A fixed spatial size makes the in-model Resizing a no-op and keeps ops static.
        spec = tf.TensorSpec((None, size, size, 3), tf.float32, name="image")
        # An explicit inference endpoint: model.export traces layers nested in sub-models
        # (BatchNorm, Dropout) in training mode, and such an export disagrees with Keras.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
        archive.write_out(str(saved), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantize or float16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if float16:
            converter.target_spec.supported_types = [tf.float16]
        return bytes(converter.convert())


def check_tflite_matches(model: keras.Model, tflite: bytes, size: int) -> None:
    """Refuse an export whose logits differ from Keras on a random probe batch."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    probe = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(model(probe, training=False), dtype=np.float64).reshape(-1)
    interpreter = Interpreter(model_content=tflite, num_threads=1)
    inp = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(inp, list(probe.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp, probe)
    interpreter.invoke()
    out = interpreter.get_output_details()[0]["index"]
    got = np.asarray(interpreter.get_tensor(out), dtype=np.float64).reshape(-1)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        raise ValueError(f"LiteRT output {got!r} is unusable")
    diff = float(np.max(np.abs(got - expected)))
    if diff > TFLITE_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        raise ValueError(f"LiteRT logits differ from Keras by {diff:.3g}")


def _fsync_tree(root: Path) -> None:
    # Data must be on disk before the rename publishes the folder (crash safety).
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync not supported on %s", path)
    finally:
        os.close(fd)
