"""Finding, aligning and cropping faces (YuNet), and the two views built from them.

A few tests compose pictures from dataset faces at run time (in memory or in tmp_path): real
faces are what a face detector must be tested on, and nothing is copied into the project.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from detector.faces import (
    FILL,
    TEMPLATE,
    YUNET_FILE,
    FaceBox,
    FaceFinder,
    FaceOptions,
    align,
    fit_inside,
    similarity,
)
from detector.imageio import LoadLimits, decode_picture
from detector.views import decode_views

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "faces"
needs_dataset = pytest.mark.skipif(
    not (DATASET / "manifest.csv").is_file(), reason=f"dataset not found at {DATASET}"
)


def _dataset_faces(n: int, source: str = "ffhq") -> list[np.ndarray]:
    with open(DATASET / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == source and r["split"] == "test"]
    return [np.asarray(Image.open(DATASET / r["path"]).convert("RGB")) for r in rows[:n]]


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _group_picture(faces: list[np.ndarray], gap: int = 64) -> tuple[np.ndarray, list[int]]:
    """Faces side by side on a grey canvas; returns the picture and each face's left edge."""
    side = faces[0].shape[0]
    width = len(faces) * side + (len(faces) + 1) * gap
    canvas = np.full((side + 2 * gap, width, 3), 110, np.uint8)
    lefts = []
    for i, face in enumerate(faces):
        left = gap + i * (side + gap)
        canvas[gap : gap + side, left : left + side] = face
        lefts.append(left)
    return canvas, lefts


def test_the_detector_ships_inside_the_package_with_its_licence() -> None:
    assert YUNET_FILE.is_file() and YUNET_FILE.stat().st_size < 1_000_000
    assert "MIT" in (YUNET_FILE.parent / "LICENSE").read_text()


@needs_dataset
def test_every_face_of_a_composed_picture_is_found_with_its_box() -> None:
    faces = _dataset_faces(3)
    picture, lefts = _group_picture(faces)
    found = FaceFinder().find(picture)
    assert len(found) == 3
    centres = sorted(f.x + f.w / 2 for f in found)
    side = faces[0].shape[0]
    for centre, left in zip(centres, lefts, strict=True):
        assert left < centre < left + side  # each box sits on its own face
    for f in found:
        assert 0.25 * side < f.w < 1.1 * side and len(f.landmarks) == 5


@needs_dataset
def test_max_faces_and_min_size_limit_what_counts() -> None:
    picture, _ = _group_picture(_dataset_faces(3))
    assert len(FaceFinder(FaceOptions(max_faces=2)).find(picture)) == 2
    assert FaceFinder(FaceOptions(min_size=400)).find(picture) == []


@needs_dataset
def test_a_large_photo_is_searched_on_a_small_copy_and_boxes_are_in_its_pixels() -> None:
    faces = _dataset_faces(2)
    picture, lefts = _group_picture(faces)
    big = cv2.resize(picture, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)  # ~3800 px
    views = decode_views(_jpeg(big), 128, LoadLimits(), FaceFinder(FaceOptions(detect_size=640)))
    assert (views.source_width, views.source_height) == (big.shape[1], big.shape[0])
    assert len(views.faces) == 2
    centres = sorted(f.box.x + f.box.w / 2 for f in views.faces)
    for centre, left in zip(centres, lefts, strict=True):
        assert 6 * left < centre < 6 * (left + faces[0].shape[0])
    assert all(f.pixels.shape == (128, 128, 3) for f in views.faces)


def test_a_picture_without_a_face_has_only_its_whole_view(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    views = decode_views(_jpeg(noise), 64, LoadLimits(), FaceFinder())
    assert views.faces == ()
    assert views.stack().shape == (1, 64, 64, 3)
    assert (views.source_width, views.source_height) == (400, 300)


def test_alignment_puts_the_landmarks_on_the_template() -> None:
    marks = np.array([[120, 100], [180, 104], [150, 140], [126, 170], [176, 172]], np.float32)
    matrix = similarity(marks, 112, 1.0)
    mapped = np.c_[marks, np.ones(5)] @ matrix.T
    assert np.abs(mapped - TEMPLATE * 112).max() < 3.0  # a similarity fits 5 points closely


def test_a_tight_crop_is_moved_inside_the_picture_never_padded() -> None:
    # A face filling a 100 px picture: the aligned window with its margin reaches past it.
    rgb = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    marks = ((30, 38), (70, 38), (50, 58), (34, 78), (66, 78))
    box = FaceBox(5, 5, 90, 95, 0.9, marks)
    face = align(Image.fromarray(rgb), box, 64, FaceOptions(face_scale=0.75))
    assert face.padded == 0.0 and face.zoom > 1.0
    # Only the fixed oval mask is grey: the same pixels in every crop, whatever the source.
    corners = face.pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == FILL).all()


def test_fit_inside_leaves_a_crop_that_fits_alone() -> None:
    matrix = similarity(np.array(TEMPLATE * 200 + 100, np.float32), 64, 0.9)
    assert np.allclose(fit_inside(matrix, 400, 400, 64), matrix)


def test_a_face_much_larger_than_the_crop_is_reduced_before_warping() -> None:
    # Fine stripes alias under plain bilinear warping; area reduction averages them to grey.
    stripes = np.zeros((1200, 1200, 3), np.uint8)
    stripes[:, ::2] = 255
    marks = tuple((x * 1000 + 100, y * 1000 + 100) for x, y in TEMPLATE.tolist())
    face = align(
        Image.fromarray(stripes), FaceBox(100, 100, 1000, 1000, 0.9, marks), 32, FaceOptions()
    )
    centre = face.pixels[12:20, 12:20].astype(float)
    assert abs(centre.mean() - 127.5) < 20 and centre.std() < 20


def test_decoding_at_working_size_keeps_small_pictures_whole() -> None:
    small = np.full((256, 256, 3), 90, np.uint8)
    assert decode_picture(_jpeg(small), 512, LoadLimits()).rgb.shape == (256, 256, 3)
    big = np.full((2400, 3200, 3), 90, np.uint8)
    reduced = decode_picture(_jpeg(big), 512, LoadLimits())
    assert max(reduced.rgb.shape[:2]) < 3200 and min(reduced.rgb.shape[:2]) >= 512
    assert reduced.scale > 1.0


def test_a_face_in_a_strip_wider_than_opencv_warps_is_cut_from_its_region() -> None:
    # Found by the fuzz campaign: a 96 x 47,456 JPEG (4.6 MP, within the pixel limit) made
    # cv2.warpAffine refuse the source (a side >= 32,767 px) and the file end as an internal
    # error. The crop now comes from the region it reads, the same pixels as from a small
    # picture holding the same neighbourhood.
    rng = np.random.default_rng(3)
    strip = rng.integers(0, 256, (120, 33_000, 3), dtype=np.uint8)
    marks = tuple((x * 80 + 20_010, y * 80 + 20) for x, y in TEMPLATE.tolist())
    box = FaceBox(20_000, 10, 100, 100, 0.9, marks)
    face = align(Image.fromarray(strip), box, 64, FaceOptions())
    local = strip[:, 19_000:21_000]
    shifted = FaceBox(1_000, 10, 100, 100, 0.9, tuple((x - 19_000, y) for x, y in marks))
    expected = align(Image.fromarray(local), shifted, 64, FaceOptions())
    assert face.pixels.shape == (64, 64, 3)
    assert np.abs(face.pixels.astype(int) - expected.pixels.astype(int)).max() <= 1


def test_a_strip_too_thin_to_hold_a_face_has_none_whatever_came_before() -> None:
    # At detection scale a 96 x 47,456 strip is 640 x 1 px; YuNet then answered with faces
    # left over from the previous picture, one run in thousands (seen in the fuzz campaign).
    finder = FaceFinder()
    faces = _dataset_faces(2) if (DATASET / "manifest.csv").is_file() else []
    strip = np.random.default_rng(4).integers(0, 256, (96, 47_456, 3), dtype=np.uint8)
    for before in [*faces, strip]:
        finder.find(before)
        assert finder.find(strip) == []


@needs_dataset
def test_a_reduced_decode_finds_the_same_faces_as_a_full_one() -> None:
    # A model without a native patch decodes a large JPEG reduced in the DCT (1/2 .. 1/8); the
    # faces it finds must be where a full decode finds them, boxes in source pixels.
    from detector.views import WORK_SIZE

    picture, _ = _group_picture(_dataset_faces(3))
    big = _jpeg(cv2.resize(picture, None, fx=5, fy=5, interpolation=cv2.INTER_LINEAR))
    finder = FaceFinder(FaceOptions(detect_size=640))
    reduced = decode_views(big, 128, LoadLimits(), finder)
    assert decode_picture(big, WORK_SIZE, LoadLimits()).scale > 1.5  # reduced on decode
    full = finder.find(decode_picture(big, None, LoadLimits()).rgb)
    assert len(reduced.faces) == len(full) == 3
    by_x = (
        sorted((f.box for f in reduced.faces), key=lambda b: b.x),
        sorted(full, key=lambda b: b.x),
    )
    for a, b in zip(*by_x, strict=True):
        # Within a few pixels for ~700 px faces in a 5,120 x 1,920 picture decoded at half size.
        assert max(abs(a.x - b.x), abs(a.y - b.y), abs(a.w - b.w), abs(a.h - b.h)) < 4


@pytest.mark.parametrize("face_side", [60, 220])  # upsampled, and downsampled by bilinear
def test_a_face_cut_from_its_region_is_the_warp_of_the_whole_picture(face_side: int) -> None:
    # Views cut each face from only its region of the decoded picture; the crop must be what
    # warping the whole picture gives, pixel for pixel (what the bundled model was trained on).
    rgb = np.random.default_rng(face_side).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    options = FaceOptions()
    for left, top in ((0, 0), (700, 400), (2000 - face_side, 1500 - face_side)):
        marks = tuple((x * face_side + left, y * face_side + top) for x, y in TEMPLATE.tolist())
        face = align(Image.fromarray(rgb), FaceBox(left, top, 9, 9, 0.9, marks), 224, options)
        matrix = fit_inside(similarity(np.array(marks, np.float32), 224, options.face_scale),
                            2000, 1500, 224)  # fmt: skip
        whole = cv2.warpAffine(rgb, matrix, (224, 224), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(FILL,) * 3)  # fmt: skip
        oval = face.pixels != FILL
        assert oval.mean() > 0.5 and np.array_equal(face.pixels[oval], whole[oval])


def test_a_face_far_larger_than_its_crop_is_read_reduced_from_its_region_alone() -> None:
    # A 1,200 px face for a 224 px crop: its region is box-reduced while it is read. Nothing
    # outside that region counts: blanking the rest of the picture changes no pixel.
    rgb = np.random.default_rng(5).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    marks = tuple((x * 1200 + 900, y * 1200 + 400) for x, y in TEMPLATE.tolist())
    box = FaceBox(900, 400, 1200, 1200, 0.9, marks)
    face = align(Image.fromarray(rgb), box, 224, FaceOptions())
    blank = np.zeros_like(rgb)
    blank[100:1900, 600:2400] = rgb[100:1900, 600:2400]  # the face with a generous margin
    assert np.array_equal(
        align(Image.fromarray(blank), box, 224, FaceOptions()).pixels, face.pixels
    )
    # And it is the face at that scale: close to area-reducing the whole picture first.
    small = Image.fromarray(cv2.resize(rgb, (1500, 1000), interpolation=cv2.INTER_AREA))
    halved = align(small, box.scaled(0.5), 224, FaceOptions())
    assert np.abs(halved.pixels.astype(int) - face.pixels.astype(int)).mean() < 8


@needs_dataset
def test_a_large_photos_views_come_from_a_reduced_copy_and_the_face_regions() -> None:
    # A 5,120 x 1,920 group photo for a patch model: the face search and the whole view read a
    # box-reduced copy, the faces and the patch the full-resolution pixels of their regions.
    # Same faces as a search of the full picture (boxes within a few pixels), and never an
    # array of the whole picture: the reduced copy's, then one face region's at a time
    # (Pillow's tobytes holds each twice while it copies; still half the picture's).
    import tracemalloc

    from detector.imageio import whole_view
    from detector.views import ViewSpec, reduced_copy

    picture_rgb, _ = _group_picture(_dataset_faces(3))
    big = cv2.resize(picture_rgb, None, fx=5, fy=5, interpolation=cv2.INTER_LINEAR)
    picture = decode_picture(_jpeg(big), None, LoadLimits())
    finder = FaceFinder(FaceOptions(detect_size=640))
    spec = ViewSpec(224, finder, patch=True)
    assert reduced_copy(picture.image, 224, 640).factor == 2

    tracemalloc.start()
    views = spec.of(picture)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full_rgb = picture.rgb
    assert peak < full_rgb.nbytes * 0.55, f"{peak:,} bytes for a {full_rgb.nbytes:,}-byte picture"

    full = sorted(finder.find(full_rgb), key=lambda b: b.x)
    found = sorted(views.faces, key=lambda f: f.box.x)
    assert len(found) == len(full) == 3
    for face, box in zip(found, full, strict=True):
        assert max(abs(face.box.x - box.x), abs(face.box.y - box.y), abs(face.box.w - box.w)) < 4
        # The crop is the full-resolution one for the box the search gave.
        assert np.array_equal(
            face.pixels, align(picture.image, face.box, 224, finder.options).pixels
        )
    first = views.faces[0].box
    cx, cy = round(first.x + first.w / 2 - 112), round(first.y + first.h / 2 - 112)
    assert views.patch is not None
    assert np.array_equal(views.patch, full_rgb[cy : cy + 224, cx : cx + 224])
    exact = whole_view(picture.image, 224).astype(int)
    assert np.abs(views.whole.astype(int) - exact).mean() < 1.0


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The work sizes decode_views asks the decoder for, in order."""
    from detector import views as views_module

    decodes: list[int | None] = []
    original = views_module.decode_picture

    def counting(data: bytes, work: int | None, limits: LoadLimits) -> object:
        decodes.append(work)
        return original(data, work, limits)

    monkeypatch.setattr(views_module, "decode_picture", counting)
    return decodes


@needs_dataset
def test_a_small_face_in_a_reduced_decode_is_cut_again_from_a_sharper_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A model without a patch decodes a 4,096 x 3,072 JPEG at 1/4 in the DCT; its 256 px faces
    # would then have 64 px for a 128 px crop. They are cut again from the sharpest decode
    # they need (here the full one), and their boxes stay those the reduced search found.
    faces = _dataset_faces(2)
    canvas = np.full((3072, 4096, 3), 100, np.uint8)
    canvas[1000:1256, 1000:1256] = faces[0]
    canvas[1500:1756, 2600:2856] = faces[1]
    data = _jpeg(canvas)
    decodes = _count_decodes(monkeypatch)
    finder = FaceFinder(FaceOptions(detect_size=640))
    views = decode_views(data, 128, LoadLimits(), finder)
    assert decodes == [512, None]  # reduced for the search, then full for the faces
    full = decode_picture(data, None, LoadLimits())
    assert len(views.faces) == 2
    for face in views.faces:
        assert np.array_equal(face.pixels, align(full.image, face.box, 128, finder.options).pixels)
        assert 100 < face.box.w < 256  # in source pixels (the faces are 256 px photos)


@needs_dataset
def test_large_faces_in_a_reduced_decode_need_no_second_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picture, _ = _group_picture(_dataset_faces(3))
    big = _jpeg(cv2.resize(picture, None, fx=5, fy=5, interpolation=cv2.INTER_LINEAR))
    decodes = _count_decodes(monkeypatch)
    views = decode_views(big, 128, LoadLimits(), FaceFinder(FaceOptions(detect_size=640)))
    assert len(views.faces) == 3 and decodes == [512]


_BATCH_SCRIPT = """
import resource, sys
from pathlib import Path
from detector.faces import FaceFinder, FaceOptions
from detector.imageio import LoadLimits
from detector.views import ViewSpec

spec = ViewSpec(224, FaceFinder(FaceOptions()), patch=True)
files = sorted(Path(sys.argv[1]).glob("*.jpg"))
spec.decode(files[0].read_bytes(), LoadLimits())  # warm-up: one photo's own peak
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
faces = sum(len(spec.decode(f.read_bytes(), LoadLimits()).faces) for f in files[1:])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, faces)
"""


@needs_dataset
def test_a_batch_of_phone_photos_is_screened_in_the_memory_of_one(tmp_path: Path) -> None:
    # Eight 4032 x 3024 photos with three faces each, screened one after another in a fresh
    # process: the peak resident size after the first photo must not grow with the batch
    # (a decoded photo is 36-48 MB; keeping any of them would add that per photo).
    import subprocess
    import sys

    faces = _dataset_faces(4)
    rng = np.random.default_rng(6)
    for k in range(8):
        scene = cv2.resize(faces[k % 4], (4032, 3024), interpolation=cv2.INTER_LINEAR)
        for j in range(3):
            face = cv2.resize(faces[(k + j + 1) % 4], (800, 800), interpolation=cv2.INTER_CUBIC)
            scene[1000:1800, 400 + 1200 * j : 1200 + 1200 * j] = face
        noisy = np.clip(scene.astype(np.int16) + rng.integers(-3, 4, scene.shape), 0, 255)
        (tmp_path / f"photo{k}.jpg").write_bytes(_jpeg(noisy.astype(np.uint8)))
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _BATCH_SCRIPT, str(tmp_path)],
        cwd=root, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    before_kb, after_kb, found = map(int, out.stdout.split())
    assert found >= 7 * 3
    assert after_kb - before_kb < 40 * 1024, f"peak grew {(after_kb - before_kb) / 1024:.0f} MB"
