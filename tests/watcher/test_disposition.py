"""Sorting files into output folders: suffixes on collision, never overwrite, crash-safe retry."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from watcher.disposition import MoveFailed, backoff_s, candidate_names, folder_for, move_file


def _file(path: Path, content: bytes) -> tuple[Path, int, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    st = path.stat()
    return path, st.st_size, st.st_mtime_ns


def test_folder_for_sorts_by_verdict(tmp_path: Path) -> None:
    assert folder_for(tmp_path, "classified", "ai") == tmp_path / "ai"
    assert folder_for(tmp_path, "classified", "real") == tmp_path / "real"
    assert folder_for(tmp_path, "rejected", None) == tmp_path / "rejected"


def test_candidate_names_add_numbered_suffixes(tmp_path: Path) -> None:
    names = [p.name for _, p in zip(range(3), candidate_names(tmp_path, "face.jpg"), strict=False)]
    assert names == ["face.jpg", "face (1).jpg", "face (2).jpg"]
    no_ext = [p.name for _, p in zip(range(2), candidate_names(tmp_path, "README"), strict=False)]
    assert no_ext == ["README", "README (1)"]


def test_collisions_get_suffixes_and_nothing_is_overwritten(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "ai"
    _file(dest / "x.jpg", b"first")
    _file(dest / "x (1).jpg", b"second")
    src, size, mtime = _file(tmp_path / "in" / "x.jpg", b"third")
    moved = move_file(src, dest, size_bytes=size, mtime_ns=mtime)
    assert moved == dest / "x (2).jpg"
    assert not src.exists()
    contents = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert contents == {"x.jpg": b"first", "x (1).jpg": b"second", "x (2).jpg": b"third"}


def test_interrupted_move_is_finished_without_a_duplicate(tmp_path: Path) -> None:
    """A crash between link() and unlink() leaves one inode under two names."""
    dest = tmp_path / "out" / "real"
    src, size, mtime = _file(tmp_path / "in" / "x.jpg", b"data")
    dest.mkdir(parents=True)
    os.link(src, dest / "x.jpg")  # what the interrupted attempt had done
    moved = move_file(src, dest, size_bytes=size, mtime_ns=mtime)
    assert moved == dest / "x.jpg"
    assert not src.exists()
    assert [p.name for p in dest.iterdir()] == ["x.jpg"]


def test_move_done_but_not_recorded_is_found_again(tmp_path: Path) -> None:
    """A kill after unlink() but before the database heard of it: the retry finds the copy."""
    dest = tmp_path / "out" / "ai"
    _file(dest / "x.jpg", b"someone else's x")
    src, size, mtime = _file(tmp_path / "in" / "x.jpg", b"ours")
    first = move_file(src, dest, size_bytes=size, mtime_ns=mtime)
    assert first == dest / "x (1).jpg"
    sha = hashlib.sha256(b"ours").hexdigest()
    again = move_file(src, dest, size_bytes=size, mtime_ns=mtime, sha256=sha)
    assert again == first
    assert sorted(p.name for p in dest.iterdir()) == ["x (1).jpg", "x.jpg"]
    with pytest.raises(MoveFailed):  # another content under that name is not ours
        move_file(src, dest, size_bytes=size, mtime_ns=mtime, sha256="0" * 64)


def test_changed_file_is_left_in_place(tmp_path: Path) -> None:
    src, size, mtime = _file(tmp_path / "in" / "x.jpg", b"data")
    with pytest.raises(MoveFailed) as failed:
        move_file(src, tmp_path / "out", size_bytes=size + 1, mtime_ns=mtime)
    assert not failed.value.retry
    assert src.read_bytes() == b"data"


def test_vanished_file_is_not_retried(tmp_path: Path) -> None:
    with pytest.raises(MoveFailed) as failed:
        move_file(tmp_path / "nope.jpg", tmp_path / "out", size_bytes=1, mtime_ns=1)
    assert not failed.value.retry


def test_blocked_output_fails_for_root_too_and_is_retried(tmp_path: Path) -> None:
    """A plain file where the output folder should be: mkdir fails even for root."""
    src, size, mtime = _file(tmp_path / "in" / "x.jpg", b"data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ai").write_bytes(b"in the way")
    with pytest.raises(MoveFailed) as failed:
        move_file(src, tmp_path / "out" / "ai", size_bytes=size, mtime_ns=mtime)
    assert failed.value.retry
    assert src.read_bytes() == b"data"


def test_symlink_is_moved_as_a_link(tmp_path: Path) -> None:
    target = tmp_path / "secret.txt"
    target.write_text("outside")
    link = tmp_path / "in" / "link.jpg"
    link.parent.mkdir()
    link.symlink_to(target)
    st = link.lstat()
    moved = move_file(link, tmp_path / "out", size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)
    assert moved.is_symlink() and target.read_text() == "outside"


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 5.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
