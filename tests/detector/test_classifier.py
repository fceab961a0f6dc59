"""Classifier: Keras and LiteRT backends, probes, refusals, batch shapes, thresholds."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from detector.bundle import KERAS_FILE, META_FILE, TFLITE_FILE, read_meta, save_bundle
from detector.classifier import Classifier, gpu_available, sigmoid
from detector.errors import ModelLoadError
from detector.imageio import LoadLimits, load_image
from detector.labels import Label

SIZE = 32
REPO = Path(__file__).resolve().parents[2]


def random_batch(n: int, seed: int = 0) -> np.ndarray:
    """n random uint8 images of the tiny model's size."""
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def flat_batch(*levels: int) -> np.ndarray:
    """One flat grey image per brightness level."""
    return np.stack([np.full((SIZE, SIZE, 3), level, dtype=np.uint8) for level in levels])


def copy_bundle(src: Path, dest: Path) -> Path:
    """A private copy of a bundle that a test may damage."""
    return Path(shutil.copytree(src, dest))


def rewrite_meta(bundle: Path, **changes: object) -> None:
    """Edit model.json in place."""
    path = bundle / META_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def keras_clf(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle, backend="keras")


@pytest.fixture(scope="module")
def litert_clf(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle, backend="litert")


# --- agreement and behaviour ----------------------------------------------------------------


def test_keras_and_litert_agree(keras_clf: Classifier, litert_clf: Classifier) -> None:
    batch = np.concatenate([random_batch(8, seed=3), flat_batch(0, 60, 128, 200, 255)])
    keras_scores, litert_scores = keras_clf.predict(batch), litert_clf.predict(batch)
    np.testing.assert_allclose(keras_scores, litert_scores, atol=1e-4, rtol=0)
    assert keras_scores.std() > 0.05  # agreement on a constant output would prove nothing


def test_tiny_model_really_discriminates(keras_clf: Classifier) -> None:
    scores = keras_clf.predict(flat_batch(10, 40, 70, 185, 215, 245))
    assert np.all(scores[:3] < 0.2), scores
    assert np.all(scores[3:] > 0.8), scores


def test_end_to_end_from_image_files(
    litert_clf: Classifier, image_factory: Callable[..., Path]
) -> None:
    dark = image_factory("dark.jpg", size=(300, 200), color=(25, 25, 25), noise=8)
    bright = image_factory("bright.png", size=(90, 120), color=(235, 235, 235), fmt="PNG")
    batch = np.stack([load_image(p, SIZE, LoadLimits()).pixels for p in (dark, bright)])
    scores = litert_clf.predict(batch)
    assert [litert_clf.label_for(float(s)) for s in scores] == [Label.REAL, Label.AI]


TRUNCATE_UNDER_A_LOADED_MODEL = """
import sys
import numpy as np
from pathlib import Path
from detector.classifier import Classifier
bundle = Path(sys.argv[1])
clf = Classifier.load(bundle, backend="litert")
x = np.random.default_rng(0).integers(0, 256, (3, clf.input_size, clf.input_size, 3), np.uint8)
before = clf.predict(x)
(bundle / "model.tflite").write_bytes(b"")  # truncated in place, as a copy over it starts
after = clf.predict(np.concatenate([x, x]))  # another batch size: the interpreter re-plans
assert np.array_equal(after[:3], before), (after, before)
print("served")
"""


def test_litert_model_truncated_in_place_keeps_serving(tmp_path: Path) -> None:
    """The interpreter holds the model's bytes; a memory-mapped file would die of SIGBUS here.

    The bundled model, not the tiny one: XNNPACK copies the tiny model's weights, so its mapped
    file is never read again.
    """
    bundle = copy_bundle(REPO / "detector" / "bundled", tmp_path / "bundle")
    run = subprocess.run(
        [sys.executable, "-c", TRUNCATE_UNDER_A_LOADED_MODEL, str(bundle)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("served")


@pytest.mark.parametrize("n", [1, 3, 32])
@pytest.mark.parametrize("backend", ["keras", "litert"])
def test_batch_shapes(n: int, backend: str, keras_clf: Classifier, litert_clf: Classifier) -> None:
    clf = keras_clf if backend == "keras" else litert_clf
    batch = random_batch(n, seed=n)
    scores = clf.predict(batch)
    assert scores.shape == (n,) and scores.dtype == np.float64
    assert np.all((scores >= 0) & (scores <= 1))
    # Each image's score does not depend on its batch neighbours.
    np.testing.assert_allclose(scores[:1], clf.predict(batch[:1]), atol=1e-6)


def test_litert_handles_changing_batch_sizes(litert_clf: Classifier) -> None:
    batch = random_batch(5, seed=9)
    whole = litert_clf.predict(batch)
    pieces = np.concatenate([litert_clf.predict(batch[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(whole, pieces, atol=1e-6)
    np.testing.assert_allclose(litert_clf.predict(batch), whole, atol=0)


def test_non_uint8_batch_is_refused(litert_clf: Classifier) -> None:
    with pytest.raises(ValueError, match="uint8"):
        litert_clf.predict(random_batch(2).astype(np.float32) / 255.0)


def test_empty_batch(keras_clf: Classifier) -> None:
    assert keras_clf.predict(random_batch(0)).shape == (0,)


@pytest.mark.parametrize("shape", [(2, SIZE, SIZE), (2, 16, 16, 3), (SIZE, SIZE, 3)])
def test_wrong_batch_shape_is_refused(litert_clf: Classifier, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="batch must be"):
        litert_clf.predict(np.zeros(shape, dtype=np.uint8))


def test_properties(litert_clf: Classifier, tiny_bundle: Path) -> None:
    meta = read_meta(tiny_bundle)
    assert litert_clf.meta == meta
    assert (litert_clf.version, litert_clf.input_size) == (meta.version, SIZE)
    assert (litert_clf.threshold, litert_clf.backend) == (meta.threshold, "litert")
    assert litert_clf.bundle_dir == tiny_bundle


def test_probe_runs_and_returns_probabilities(litert_clf: Classifier) -> None:
    scores = litert_clf.probe()
    assert scores.shape == (2,) and np.all(np.isfinite(scores))


# --- backend choice and imports ---------------------------------------------------------------


@pytest.mark.skipif(gpu_available(), reason="auto picks Keras on a GPU")
def test_auto_prefers_litert_on_cpu(tiny_bundle: Path) -> None:
    assert Classifier.load(tiny_bundle).backend == "litert"


def test_auto_uses_keras_without_a_tflite_file(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / TFLITE_FILE).unlink()
    assert Classifier.load(bundle).backend == "keras"
    with pytest.raises(ModelLoadError, match="litert"):
        Classifier.load(bundle, backend="litert")


def test_litert_path_does_not_import_tensorflow(tiny_bundle: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from detector.classifier import Classifier\n"
        f"c = Classifier.load(Path({str(tiny_bundle)!r}), backend='litert')\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_mixed_precision_on_without_gpu_keeps_float32_results(
    tiny_bundle: Path, keras_clf: Classifier
) -> None:
    if gpu_available():
        pytest.skip("on a GPU mixed precision really changes the numbers")
    clf = Classifier.load(tiny_bundle, backend="keras", mixed_precision="on")
    batch = random_batch(4, seed=4)
    np.testing.assert_array_equal(clf.predict(batch), keras_clf.predict(batch))


def test_mixed_float16_switch_keeps_a_float32_logit(tiny_bundle: Path) -> None:
    # The GPU path's policy switch, exercised on the CPU (float16 kernels exist there, slowly).
    import keras
    import tensorflow as tf

    from detector import classifier as clf_module

    model = keras.saving.load_model(tiny_bundle / KERAS_FILE, compile=False)
    batch = random_batch(4, seed=5)
    reference = clf_module._keras_logits_fn(tf, model, SIZE, "/CPU:0")(batch)
    clf_module._switch_to_mixed_float16(model)
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers[1:]}
    assert policies.pop(model.layers[-1].name) == "float32"  # the logit head stays float32
    assert set(policies.values()) == {"mixed_float16"}
    mixed = clf_module._keras_logits_fn(tf, model, SIZE, "/CPU:0")(batch)
    assert mixed.dtype == np.float64
    np.testing.assert_allclose(mixed, reference, atol=5e-3)
    assert not np.array_equal(mixed, reference)  # float16 really was used


def test_bad_options_are_refused(tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        Classifier.load(tiny_bundle, backend="onnx")
    with pytest.raises(ValueError, match="mixed_precision"):
        Classifier.load(tiny_bundle, mixed_precision="maybe")
    with pytest.raises(ValueError, match="threshold"):
        Classifier.load(tiny_bundle, threshold=1.5)


# --- calibration and thresholds -----------------------------------------------------------


def test_threshold_override_and_label_for(tiny_bundle: Path, litert_clf: Classifier) -> None:
    assert litert_clf.label_for(0.5) is Label.AI  # the threshold itself counts as ai
    assert litert_clf.label_for(0.4999) is Label.REAL
    strict = Classifier.load(tiny_bundle, backend="litert", threshold=0.9)
    assert strict.threshold == 0.9
    assert strict.label_for(0.8) is Label.REAL
    assert strict.label_for(0.95) is Label.AI


def test_threshold_from_meta(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    rewrite_meta(bundle, threshold=0.7)
    clf = Classifier.load(bundle, backend="litert")
    assert clf.threshold == 0.7
    assert clf.label_for(0.69) is Label.REAL


def test_temperature_is_applied(tiny_bundle: Path, tmp_path: Path, litert_clf: Classifier) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    rewrite_meta(bundle, temperature=2.0)
    warm = Classifier.load(bundle, backend="litert")
    batch = flat_batch(20, 230)
    p = litert_clf.predict(batch)
    logits = np.log(p / (1 - p))
    np.testing.assert_allclose(warm.predict(batch), sigmoid(logits, 2.0), atol=1e-9)


def test_sigmoid_is_stable_at_extremes() -> None:
    scores = sigmoid(np.array([-1e4, 0.0, 1e4]))
    np.testing.assert_array_equal(scores, [0.0, 0.5, 1.0])


# --- broken bundles are refused ---------------------------------------------------------------


def test_missing_bundle_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        Classifier.load(tmp_path / "nope")


def test_missing_model_json(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / META_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"model\.json"):
        Classifier.load(bundle)


@pytest.mark.parametrize(
    "content", ["{broken", '{"version": "x", "arch": "y", "input_size": 32, "threshold": 7}']
)
def test_bad_model_json(tiny_bundle: Path, tmp_path: Path, content: str) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / META_FILE).write_text(content)
    with pytest.raises(ModelLoadError, match=r"model\.json"):
        Classifier.load(bundle)


def test_corrupt_keras_file(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / KERAS_FILE).write_bytes(b"PK\x03\x04 this is not a model")
    with pytest.raises(ModelLoadError, match="Keras"):
        Classifier.load(bundle, backend="keras")


def test_missing_keras_file(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / KERAS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="not found"):
        Classifier.load(bundle, backend="keras")


def test_corrupt_tflite_is_refused_or_skipped(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / TFLITE_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="LiteRT"):
        Classifier.load(bundle, backend="litert")
    assert Classifier.load(bundle, backend="auto").backend == "keras"


def test_tflite_size_must_match_meta(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    rewrite_meta(bundle, input_size=48)
    with pytest.raises(ModelLoadError, match="48"):
        Classifier.load(bundle, backend="litert")


def test_model_with_nan_weights_fails_the_probe(tiny_bundle: Path, tmp_path: Path) -> None:
    import keras

    model = keras.saving.load_model(tiny_bundle / KERAS_FILE, compile=False)
    head = model.layers[-1]  # NaN earlier could be swallowed by relu (max(NaN, 0) == 0 in oneDNN)
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.full_like(bias, np.nan)])
    meta = dataclasses.replace(read_meta(tiny_bundle), version="nan-model")
    bundle = save_bundle(model, meta, tmp_path / "nan", export_litert=False)
    with pytest.raises(ModelLoadError, match="probe"):
        Classifier.load(bundle, backend="keras")
