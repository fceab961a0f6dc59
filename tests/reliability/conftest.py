"""Reliability-suite helpers: the watcher deployment fixtures, file-system census, odd files."""

from __future__ import annotations

import os
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest

# Reuse the watcher helpers (deployment, thread-leak check) rather than copying them.
from tests.watcher.conftest import (  # noqa: F401  (fixtures are registered by import)
    Deployment,
    deployment,
    no_leaked_threads,
)

HEAVY = os.environ.get("DFD_HEAVY") == "1"
heavy = pytest.mark.skipif(not HEAVY, reason="heavy load variant: set DFD_HEAVY=1 to run")


def census(dep: Deployment) -> Counter[str]:
    """Where every plain file (or link) under inbox and output is: 'inbox', 'real', 'ai', ..."""
    where: Counter[str] = Counter()
    for path in dep.inbox.rglob("*") if dep.inbox.exists() else []:
        if path.is_symlink() or not path.is_dir():
            where["inbox"] += 1
    for label in ("real", "ai", "rejected"):
        folder = dep.output / label
        if folder.is_dir():
            where[label] += sum(1 for p in folder.iterdir() if p.is_symlink() or not p.is_dir())
    return where


def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A valid 1-bit PNG of side x side pixels that compresses to a few hundred KB at most."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path
