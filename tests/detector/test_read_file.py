"""read_file() and load_image(): what can go wrong before a single byte is decoded."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from detector.errors import ImageRejected
from detector.imageio import LoadLimits, load_image, read_file

LIMITS = LoadLimits()


def reject_code(path: Path, limits: LoadLimits = LIMITS) -> str:
    """The rejection code read_file raises for `path`."""
    with pytest.raises(ImageRejected) as info:
        read_file(path, limits)
    return info.value.code


def test_reads_a_regular_file_whole(image_factory: Callable[..., Path]) -> None:
    path = image_factory("face.png", fmt="PNG", noise=30)
    assert read_file(path, LIMITS) == path.read_bytes()


def test_follows_a_symlink_to_a_regular_file(
    tmp_path: Path, image_factory: Callable[..., Path]
) -> None:
    target = image_factory("face.jpg")
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    assert read_file(link, LIMITS) == target.read_bytes()


def test_missing_file_has_vanished(tmp_path: Path) -> None:
    assert reject_code(tmp_path / "gone.jpg") == "vanished"


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "looks-like.jpg"
    folder.mkdir()
    assert reject_code(folder) == "not_a_file"


def test_fifo_is_not_a_file_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    codes: list[str] = []

    def attempt() -> None:
        try:
            read_file(fifo, LIMITS)
        except ImageRejected as exc:
            codes.append(exc.code)

    # A daemon thread: if opening ever blocks again, the test fails instead of hanging.
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "read_file blocked on a FIFO"
    assert codes == ["not_a_file"]


def test_too_large_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 1000)
    assert reject_code(path, LoadLimits(max_bytes=999)) == "too_large"
    assert len(read_file(path, LoadLimits(max_bytes=1000))) == 1000


def test_empty_file_reads_as_empty_and_is_rejected_on_decode(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert read_file(path, LIMITS) == b""
    with pytest.raises(ImageRejected) as info:
        load_image(path, 32, LIMITS)
    assert info.value.code == "empty"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    path.write_bytes(b"x")
    path.chmod(0)
    assert reject_code(path) == "unreadable"


def test_load_image_reads_and_decodes(image_factory: Callable[..., Path]) -> None:
    path = image_factory("face.jpg", size=(120, 80), color=(10, 200, 30))
    decoded = load_image(path, 24, LIMITS)
    assert decoded.pixels.shape == (24, 24, 3)
    assert (decoded.source_width, decoded.source_height) == (120, 80)
    assert np.abs(decoded.pixels.astype(int) - (10, 200, 30)).max() <= 8


def test_load_image_rejects_a_renamed_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("meeting notes, definitely not a face\n")
    with pytest.raises(ImageRejected) as info:
        load_image(path, 24, LIMITS)
    assert info.value.code == "not_an_image"


def test_rejection_codes_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown rejection code"):
        ImageRejected("bogus", "nope")
    exc = ImageRejected("empty", "the file is empty")
    assert (exc.code, exc.reason, str(exc)) == ("empty", "the file is empty", "the file is empty")
