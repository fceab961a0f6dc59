"""The pretrained-backbone architecture: built, trained for a step, served with both views."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from detector.bundle import read_meta
from detector.classifier import Classifier
from detector.faces import FaceOptions
from detector.imageio import LoadLimits
from training import architectures
from training.datasets import SPLITS, load_layout
from training.evaluate import evaluate
from training.fit import FitSettings, train
from training.pretrained import combine, features
from training.pretrained.head import fit_head
from training.pretrained.network import (
    BACKBONE_NAME,
    TAPS,
    build_mobilenet_ms,
    feature_width,
    float16_copy,
    load_mobilenet,
    set_head,
)
from training.pretrained.run import initial_model
from watcher.decoding import decode_job
from watcher.messages import Decoded, Job

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATASET = SHARED / "datasets" / "faces"
WEIGHTS = SHARED / "weights" / "mobilenet_v1_1.0_notop_imagenet.weights.h5"
needs_dataset = pytest.mark.skipif(
    not (DATASET / "manifest.csv").is_file(), reason=f"dataset not found at {DATASET}"
)


@pytest.fixture(scope="module")
def face_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Kaggle-layout folder of links to real dataset faces (nothing is copied)."""
    if not (DATASET / "manifest.csv").is_file():
        pytest.skip(f"dataset not found at {DATASET}")
    root = tmp_path_factory.mktemp("faces")
    with open(DATASET / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept: list[dict[str, str]] = []
    for split in SPLITS:
        for label in ("0", "1"):
            pick = [r for r in rows if r["split"] == split and r["label"] == label]
            for r in pick[:: max(1, len(pick) // 6)][:6]:
                (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(DATASET / r["path"], root / r["path"])
                kept.append(r)
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return root


def test_the_architecture_pools_every_tapped_depth(random_weights: Path) -> None:
    model = architectures.build("mobilenet_ms", 64, str(random_weights))
    assert architectures.ARCHITECTURES["mobilenet_ms"].pretrained
    widths = {"conv_pw_1_relu": 64, "conv_pw_13_relu": 1024}
    assert feature_width(model) > sum(widths.values()) and len(TAPS) == 10
    logits = model(np.zeros((2, 80, 80, 3), np.float32))  # any size in: Resizing inside
    assert tuple(logits.shape) == (2, 1)


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"ImageNet weights not found at {WEIGHTS}")
def test_imagenet_weights_load_from_a_local_file() -> None:
    base = load_mobilenet(64, WEIGHTS)
    fresh = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(64, 64, 3))
    kernel = base.get_layer("conv1").get_weights()[0]
    assert not np.allclose(kernel, fresh.get_layer("conv1").get_weights()[0])
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        load_mobilenet(64, WEIGHTS.with_name("missing.weights.h5"))


def test_the_fitted_head_gives_the_full_model_its_logits(
    random_weights: Path, tmp_path: Path
) -> None:
    model = build_mobilenet_ms(64, random_weights)
    extract = features.Extractor(model, 64)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    feats = extract(pixels)
    assert feats.shape == (40, feature_width(model)) and extract.width == feats.shape[1]
    labels = (pixels.mean(axis=(1, 2, 3)) > 127.5).astype(np.float32)
    head = fit_head(feats, labels, np.ones(40), c=1.0, seed=0)
    set_head(model, head.mean, head.variance, head.coef, head.bias)
    got = np.asarray(model(pixels.astype(np.float32), training=False)).reshape(-1)
    assert np.allclose(got, head.logits(feats), atol=1e-2 * max(1.0, float(np.abs(got).max())))
    model.save(tmp_path / "model.keras")  # and the standardisation survives saving
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)
    again = np.asarray(loaded(pixels.astype(np.float32), training=False)).reshape(-1)
    assert np.allclose(again, got, atol=1e-4)
    # Float16 storage (what a bundle ships when int8 costs accuracy) keeps the logits.
    half = float16_copy(model, 64)
    assert half.get_layer("mobilenet_taps").get_layer("conv1").weights[0].dtype == "float16"
    halved = np.asarray(half(pixels.astype(np.float32), training=False)).reshape(-1)
    assert np.allclose(halved, got, atol=0.05 * max(1.0, float(np.abs(got).max())))


@needs_dataset
def test_training_serving_and_the_combination_on_real_faces(
    face_dataset: Path, random_weights: Path, tmp_path: Path
) -> None:
    splits = load_layout(face_dataset)
    settings = FitSettings(
        arch="mobilenet_ms",
        image_size=64,
        backbone_weights=str(random_weights),
        feature_passes=2,
        invariance_per_source=2,
    )
    cache = tmp_path / "cache"
    result = train(
        splits, settings, dest=tmp_path / "bundle", run_dir=tmp_path / "run", cache_dir=cache
    )
    meta = read_meta(result.bundle_dir)
    assert meta.faces["face_scale"] == FaceOptions().face_scale
    assert meta.views == ("whole", "patch", "face")
    assert meta.combine["face_alone"] is not None and "patch" in meta.combine
    test = meta.metrics["test"]
    assert {"whole", "patch", "face"} <= set(test["views"])
    # The uncertain band holds at most 5 % of the validation pictures.
    band = meta.training["calibration"]["validation_band"]
    assert band["uncertain_share"] <= 0.05 + 1e-9 and "uncertain_share" in test["band"]
    # Quality per source, and what it says about the class before and after the weights.
    quality = meta.training["quality"]
    assert set(quality["per_source"]) == {s.source for s in splits.all()}
    assert set(quality["class_signal_weighted"]) == {"side", "sharpness", "jpeg_quality"}
    # Every processing chain measured on the published model.
    chains = test["invariance"]["chains"]
    assert len(chains) == 8 and all("flipped" in c and "by_class" in c for c in chains.values())
    classifier = Classifier.load(result.bundle_dir)
    assert classifier.finder is not None and classifier.spec.patch
    # Identical views: what training renders is what serving decodes from the same file.
    sample = splits.test[0]
    spec = classifier.spec
    rendered = features.render(sample, features.PLAIN, spec, features.Passes())
    real_file = sample.path.resolve()  # serving never follows links: the file itself
    st = real_file.stat()
    job = Job(1, str(real_file), st.st_size, st.st_mtime_ns, "scan", 0)
    served = decode_job(job, spec, LoadLimits(), provenance=False)
    assert isinstance(served, Decoded) and rendered is not None, served
    assert np.array_equal(rendered.views.whole, served.views.whole)
    assert np.array_equal(rendered.views.faces[0].pixels, served.views.faces[0].pixels)
    picture = classifier.score_pictures([served.views])[0]
    assert 0.0 <= picture.score <= 1.0 and len(picture.faces) == 1
    # `evaluate` (and so retraining's gate) scores pictures as serving does, faces included.
    report = evaluate(result.bundle_dir, splits.test)
    assert report.metrics["n"] == test["n"]
    assert report.metrics["roc_auc"] == pytest.approx(test["roc_auc"], abs=0.02)
    # Retraining starts from this bundle's backbone: no ImageNet file needed any more.
    again = initial_model(
        dataclasses.replace(settings, backbone_weights="/nonexistent"), result.bundle_dir
    )
    saved = keras.saving.load_model(result.bundle_dir / "model.keras", compile=False)
    for got, want in zip(
        again.get_layer(BACKBONE_NAME).get_weights(),
        saved.get_layer(BACKBONE_NAME).get_weights(),
        strict=True,
    ):
        assert np.allclose(got, want.astype(np.float32), atol=1e-6)


def test_the_combination_rule_weighs_the_view_that_carries_the_evidence() -> None:
    # Face swaps: only the face logit separates the classes; the whole view is noise.
    rng = np.random.default_rng(0)
    labels = np.repeat([0.0, 1.0], 200)
    whole = rng.normal(0.0, 1.0, 400)
    patch = rng.normal(0.0, 1.0, 400)
    face = np.where(labels > 0, 2.0, -2.0) + rng.normal(0.0, 1.0, 400)
    face[::10] = np.nan  # some pictures without a face
    logits = combine.PictureLogits(whole, patch, face)
    rule = combine.fit_rule(logits, labels, seed=0, face_decides=True)
    assert rule.face > 1.0 and abs(rule.whole) < 0.5 and abs(rule.patch) < 0.5
    assert rule.face_alone is not None and rule.face_alone > 1.0
    probs = combine.picture_probs(rule, logits)
    has = logits.has_face
    assert ((probs >= 0.5) == (labels > 0))[has].mean() > 0.9
    # Without a face the rule's own part decides, whatever the face weight.
    assert rule.logit(1.0, [], patch=0.5) == pytest.approx(
        rule.whole_only * 1.0 + rule.patch_only * 0.5 + rule.bias_only
    )


def test_exports_are_judged_by_the_pictures_labels_not_one_view() -> None:
    # Two pictures whose whole views say "real" (logit -1) and whose faces differ: the label
    # comes from the rule over every view, so a format that moved only the face logits would
    # change the verdict and must be judged by it.
    from detector.faces import AlignedFace, FaceBox
    from detector.scoring import CombineRule
    from detector.views import Views

    def view(level: int) -> np.ndarray:
        return np.full((8, 8, 3), level, np.uint8)

    def picture(face_level: int) -> Views:
        face = AlignedFace(FaceBox(0, 0, 4, 4, 0.9), view(face_level), 0.0)
        return Views(view(10), (face,), 8, 8, "PNG", patch=view(20))

    rule = CombineRule(whole=1.0, patch=0.0, face=1.0, bias=0.0, face_alone=1.0)
    judge = combine.picture_judge(
        [picture(200), picture(30)], np.array([1.0, 0.0]), ("gen", "cam"), rule, 0.5
    )

    def exact(pixels: np.ndarray) -> np.ndarray:  # face 200 -> +3, everything else -1
        return np.where(pixels[:, 0, 0, 0] == 200, 3.0, -1.0)

    def face_shifted(pixels: np.ndarray) -> np.ndarray:  # the fake face pushed under zero
        return np.where(pixels[:, 0, 0, 0] == 200, -0.5, -1.0)

    assert judge(exact) == {"accuracy": 1.0, "per_source": {"cam": 1.0, "gen": 1.0}}
    assert judge(face_shifted)["per_source"] == {"cam": 1.0, "gen": 0.0}
