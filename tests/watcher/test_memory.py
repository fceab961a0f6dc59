"""Freed heap memory goes back to the system (watcher.memory)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from watcher import memory

linux_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or memory._TRIM is None,
    reason="malloc_trim is glibc's",
)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@linux_glibc
def test_trim_returns_the_free_pages_between_live_blocks() -> None:
    # 100 KB blocks stay below glibc's mmap threshold: they live in the heap, and freeing
    # every other one leaves holes that free() alone keeps resident.
    blocks = [bytearray(100_000) for _ in range(2000)]
    for block in blocks:
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    kept = blocks[::2]
    del blocks
    before = _rss_mb()
    assert memory.trim()
    after = _rss_mb()
    assert before - after > 50, (before, after)  # about 100 MB was freed in holes
    assert all(block[0] == 1 for block in kept)  # live blocks are untouched
