"""The views of a picture: the whole view, the native-resolution patch, the faces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector.faces import FaceBox
from detector.imageio import LoadLimits, decode_picture
from detector.views import ViewSpec, decode_views, native_patch, reduced_copy


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_the_patch_keeps_the_pictures_own_pixels_around_the_face() -> None:
    rgb = _noise(900, 1200)
    face = FaceBox(x=700, y=100, w=200, h=240, score=0.9)
    patch = native_patch(Image.fromarray(rgb), 224, face)
    # Centred on the face's centre (800, 220), read 1:1 from the picture.
    assert np.array_equal(patch, rgb[108:332, 688:912])


def test_the_patch_stays_inside_the_picture_and_centres_without_a_face() -> None:
    rgb = _noise(300, 400, 1)
    corner = FaceBox(x=0, y=0, w=30, h=30, score=0.9)
    image = Image.fromarray(rgb)
    assert np.array_equal(native_patch(image, 224, corner), rgb[0:224, 0:224])
    assert np.array_equal(native_patch(image, 224, None), rgb[38:262, 88:312])


def test_a_picture_smaller_than_the_patch_gives_its_centre_square_resized() -> None:
    rgb = _noise(120, 160, 2)
    patch = native_patch(Image.fromarray(rgb), 64, None)
    assert patch.shape == (64, 64, 3)
    small = native_patch(Image.fromarray(rgb), 224, None)
    expected = np.array(Image.fromarray(rgb[:, 20:140]).resize((224, 224), Image.BILINEAR))
    assert np.array_equal(small, expected)


def test_a_patch_model_decodes_large_jpegs_at_full_resolution() -> None:
    rgb = _noise(1200, 1600, 3)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=95)
    data = out.getvalue()
    full = decode_picture(data, None, LoadLimits()).rgb
    assert full.shape == (1200, 1600, 3)
    reduced = decode_picture(data, 512, LoadLimits()).rgb
    assert reduced.shape[0] < 1200  # what a model without a patch view decodes
    views = decode_views(data, 224, LoadLimits(), None, patch=True)
    assert views.patch is not None
    assert np.array_equal(views.patch, full[488:712, 688:912])
    assert decode_views(data, 224, LoadLimits(), None).patch is None


def test_a_spec_decodes_what_its_model_scores() -> None:
    data = _png(_noise(256, 256, 4))
    plain, patched = ViewSpec(64), ViewSpec(64, None, patch=True)
    assert plain.key != patched.key and plain.key == ViewSpec(64).key
    views = patched.decode(data, LoadLimits())
    assert views.patch is not None and views.stack().shape == (2, 64, 64, 3)
    assert plain.decode(data, LoadLimits()).stack().shape == (1, 64, 64, 3)
    with pytest.raises(ValueError):
        decode_picture(data, 0, LoadLimits())


@pytest.mark.parametrize(
    ("size", "detect", "factor"),
    [((256, 256), 640, 1), ((512, 384), 640, 1), ((1280, 1280), 640, 1), ((1024, 1024), None, 1),
     ((2048, 1536), 640, 2), ((4032, 3024), 640, 4), ((3024, 4032), 640, 4),
     ((4032, 3024), None, 4), ((8000, 6000), None, 8), ((8000, 6000), 640, 8),
     ((6000, 700), 640, 1)],
)  # fmt: skip
def test_only_pictures_far_larger_than_the_views_get_a_reduced_copy(
    size: tuple[int, int], detect: int | None, factor: int
) -> None:
    # Every training picture (at most 512 px) is searched and viewed at its own resolution;
    # a phone photo keeps at least 3x the whole view's side and the full detection size.
    image = Image.new("RGB", size, (90, 120, 150))
    copy = reduced_copy(image, 224, detect)
    assert copy.factor == factor
    if factor == 1:
        assert copy.image is image
    else:
        assert copy.image.size == (-(-size[0] // factor), -(-size[1] // factor))
        assert min(copy.image.size) >= 3 * 224
        assert detect is None or max(copy.image.size) >= detect
