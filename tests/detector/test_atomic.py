"""The one atomic file writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from detector.atomic import write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_text_bytes_and_writer_functions(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "a.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"

    def writer(fh: BinaryIO) -> None:
        fh.write(b"streamed")

    assert write_atomic(tmp_path / "c.bin", writer).read_bytes() == b"streamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.bin"]


def test_modes_new_given_and_kept(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "f", "1")
    assert _mode(path) == 0o644
    write_atomic(path, "2", mode=0o600)
    assert _mode(path) == 0o600
    write_atomic(path, "3")  # replacing keeps the file's mode
    assert _mode(path) == 0o600 and path.read_text() == "3"


def test_a_failure_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "report.html", "old")

    def broken(fh: BinaryIO) -> None:
        fh.write(b"half of the new")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
