"""Self-blended images: face swaps made from real faces (dataset faces composed at run time)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from detector.faces import FaceFinder, FaceOptions
from detector.imageio import LoadLimits, decode_picture
from detector.views import ViewSpec
from training.datasets import Sample
from training.pretrained import features
from training.sbi import self_blend
from watcher.decoding import decode_job
from watcher.messages import Decoded, Job

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "faces"
pytestmark = pytest.mark.skipif(
    not (DATASET / "manifest.csv").is_file(), reason=f"dataset not found at {DATASET}"
)


def _real_face_file(tmp_path: Path, index: int = 0) -> Path:
    """A real dataset photo, linked into tmp_path (nothing copied into the project)."""
    with open(DATASET / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == "ffhq" and r["split"] == "test"]
    link = tmp_path / f"real_{index}.jpg"
    os.symlink(DATASET / rows[index]["path"], link)
    return link


def test_the_blend_mask_stays_inside_the_face(tmp_path: Path) -> None:
    finder = FaceFinder(FaceOptions())
    for index in range(4):
        rgb = decode_picture(_real_face_file(tmp_path, index).read_bytes(), None, LoadLimits()).rgb
        face = finder.find(rgb)[0]
        for seed in range(5):
            blended = self_blend(rgb, face, seed)
            mask = blended.mask
            assert mask.shape == rgb.shape[:2] and mask.min() >= 0.0 and mask.max() <= 1.0
            ys, xs = np.nonzero(mask > 0)
            assert len(ys) > 0.05 * face.w * face.h  # the face itself is blended ...
            assert xs.min() >= np.floor(face.x) and xs.max() <= np.ceil(face.x + face.w)
            assert ys.min() >= np.floor(face.y) and ys.max() <= np.ceil(face.y + face.h)
            # ... and nothing outside the mask changed.
            changed = np.any(blended.rgb != rgb, axis=2)
            assert not changed[mask == 0].any()
            assert changed[mask > 0.5 * mask.max()].mean() > 0.5
            # The same seed gives the same picture.
            assert np.array_equal(self_blend(rgb, face, seed).rgb, blended.rgb)


def test_self_blends_are_labelled_manipulated_and_made_only_from_real_pictures(
    tmp_path: Path,
) -> None:
    spec = ViewSpec(64, FaceFinder(FaceOptions()), patch=True)
    passes = features.Passes(degraded=1, self_blend=True, seed=3)
    real = Sample(_real_face_file(tmp_path), 0, "train", "ffhq")
    blended = features.render(real, features.SELF_BLEND, spec, passes)
    assert blended is not None
    assert blended.label == 1.0 and blended.kinds == ("patch", "face")
    plain = features.render(real, features.PLAIN, spec, passes)
    assert plain is not None and plain.label == 0.0 and plain.kinds == features.KINDS
    fake = Sample(real.path, 1, "train", "stylegan")
    assert features.render(fake, features.SELF_BLEND, spec, passes) is None


@pytest.mark.parametrize("number", [features.PLAIN, 1, features.SELF_BLEND])
def test_training_views_are_what_serving_cuts_from_the_same_bytes(
    tmp_path: Path, number: int
) -> None:
    spec = ViewSpec(64, FaceFinder(FaceOptions()), patch=True)
    passes = features.Passes(degraded=1, self_blend=True, seed=5)
    sample = Sample(_real_face_file(tmp_path), 0, "train", "ffhq")
    rendered = features.render(sample, number, spec, passes)
    data = features.rendered_bytes(sample, number, spec, passes)
    assert rendered is not None and data is not None
    screened = tmp_path / "dropped.bin"
    screened.write_bytes(data)
    st = screened.stat()
    job = Job(1, str(screened), st.st_size, st.st_mtime_ns, "inbox", 0)
    served = decode_job(job, spec, LoadLimits(), provenance=False)
    assert isinstance(served, Decoded), served
    assert served.views.patch is not None and rendered.views.patch is not None
    assert np.array_equal(served.views.whole, rendered.views.whole)
    assert np.array_equal(served.views.patch, rendered.views.patch)
    assert len(served.views.faces) == len(rendered.views.faces) >= 1
    assert np.array_equal(served.views.faces[0].pixels, rendered.views.faces[0].pixels)


def test_a_blend_is_not_a_copy_of_the_face(tmp_path: Path) -> None:
    rgb = decode_picture(_real_face_file(tmp_path).read_bytes(), None, LoadLimits()).rgb
    face = FaceFinder(FaceOptions()).find(rgb)[0]
    diffs = []
    for seed in range(8):
        blended = self_blend(rgb, face, seed)
        inside = blended.mask > 0.9
        if inside.any():
            diffs.append(np.abs(blended.rgb[inside].astype(int) - rgb[inside]).mean())
    assert diffs and np.mean(diffs) > 1.0
