"""The one atomic file writer: readers see the old file or the new one, never half of one.

Every package writes through it (model.json, sidecar verdict files, HTML reports, training
caches): a temporary sibling created exclusively, written, flushed and fsynced, then renamed
over the target; whatever fails on the way removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


def write_atomic(path: Path, content: Content, *, mode: int | None = None) -> Path:
    """Write `content` (bytes, UTF-8 text, or a function writing to the open file) to `path`.

    `mode`: the file's permission bits; None keeps those of the file it replaces (0o644 for a
    new one).
    """
    path = Path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
    # mkstemp opens with O_EXCL: never an existing file, never another writer's temp file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
