"""decode_job: a claimed file that vanished, changed, or is no regular file never raises."""

from __future__ import annotations

import os
from pathlib import Path

from detector.imageio import LoadLimits
from detector.views import ViewSpec
from tests.conftest import ImageFactory
from watcher.decoding import decode_job
from watcher.messages import Decoded, Job, Rejected


def _job(path: Path) -> Job:
    st = os.lstat(path)
    return Job(1, str(path), st.st_size, st.st_mtime_ns, "inbox", 1)


def test_good_image_is_decoded_to_the_model_size(image_factory: ImageFactory) -> None:
    path = image_factory("a.jpg", size=(80, 60))
    item = decode_job(_job(path), ViewSpec(32), LoadLimits())
    assert isinstance(item, Decoded)
    assert item.views.whole.shape == (32, 32, 3) and (item.width, item.height) == (80, 60)
    assert item.views.patch is None and item.spec == ViewSpec(32).key
    assert len(item.sha256) == 64 and item.format == "JPEG"


def test_vanished_and_changed_files_are_rejected_with_a_reason(
    image_factory: ImageFactory,
) -> None:
    path = image_factory("a.jpg")
    job = _job(path)
    with open(path, "ab") as fh:
        fh.write(b"more bytes")  # changed while queued
    changed = decode_job(job, ViewSpec(32), LoadLimits())
    assert isinstance(changed, Rejected) and changed.code == "vanished"
    assert "changed" in changed.reason
    path.unlink()
    gone = decode_job(job, ViewSpec(32), LoadLimits())
    assert isinstance(gone, Rejected) and gone.code == "vanished"


def test_links_pipes_and_folders_are_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "link.jpg").symlink_to("/etc/hostname")
    (tmp_path / "dir.jpg").mkdir()
    for name in ("pipe.jpg", "link.jpg", "dir.jpg"):
        item = decode_job(_job(tmp_path / name), ViewSpec(32), LoadLimits())
        assert isinstance(item, Rejected) and item.code == "not_a_file", name


def test_limits_apply(image_factory: ImageFactory) -> None:
    path = image_factory("big.png", size=(300, 300), fmt="PNG", noise=30.0)
    item = decode_job(_job(path), ViewSpec(32), LoadLimits(max_bytes=1000))
    assert isinstance(item, Rejected) and item.code == "too_large"
    item = decode_job(_job(path), ViewSpec(32), LoadLimits(max_pixels=10_000))
    assert isinstance(item, Rejected) and item.code == "too_many_pixels"
