"""Sorting screened files into <output>/real, ai, uncertain and rejected.

Never overwrites and never deletes content: the file is hard-linked under a free name
(link() fails with EEXIST instead of replacing, so there is no check-then-rename race) and only
then unlinked from the inbox. A crash between the two leaves the same inode under both names;
the retry recognises its own earlier link and just removes the inbox name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from detector.labels import Label
from storage.models import FileState

logger = logging.getLogger(__name__)

REJECTED_DIR = "rejected"
MAX_SUFFIX = 10_000
# Looking for an earlier move's result: names in a row that may be missing (deleted since).
MISSES_BEFORE_GIVING_UP = 20
# link() is impossible here (other filesystem, or no hard links): copy or rename instead.
_NO_LINK_ERRNOS = frozenset(
    {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}
)


class MoveFailed(Exception):
    """A move that did not happen; `retry` is False when trying again cannot help."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


SORTED_LABELS = frozenset(label.value for label in Label)


def folder_for(output: Path, status: str, label: str | None) -> Path:
    """<output>/real, <output>/ai, <output>/uncertain or <output>/rejected."""
    if status == FileState.CLASSIFIED and label in SORTED_LABELS:
        return output / label
    return output / REJECTED_DIR


def candidate_names(folder: Path, name: str) -> Iterator[Path]:
    """`name`, then `stem (1).ext`, `stem (2).ext`, ... inside `folder`."""
    yield folder / name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dot-file such as ".profile"
        stem, dot, ext = name, "", ""
    for n in range(1, MAX_SUFFIX):
        suffix = f" ({n}){dot}{ext}"
        yield folder / (fit_name(stem, suffix) + suffix)


# Most filesystems cap a name at 255 bytes; a suffixed copy of a long name must stay under it,
# or the move fails with "File name too long" on every retry.
NAME_MAX_BYTES = 255


def fit_name(stem: str, suffix: str) -> str:
    """`stem` shortened (whole characters) so that stem + suffix fits in NAME_MAX_BYTES."""
    budget = NAME_MAX_BYTES - len(os.fsencode(suffix))
    encoded = os.fsencode(stem)
    if len(encoded) <= budget:
        return stem
    return os.fsdecode(encoded[:budget]).encode("utf-8", "ignore").decode("utf-8", "ignore")


def move_file(
    src: Path, folder: Path, *, size_bytes: int, mtime_ns: int, sha256: str | None = None
) -> Path:
    """Move the screened file `src` into `folder`; returns where it went; MoveFailed if not."""
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        # Killed after the move but before it was recorded? Then it is already in `folder`.
        done = find_moved(folder, src.name, size_bytes, mtime_ns, sha256)
        if done is not None:
            return done
        raise MoveFailed("the file is no longer in the inbox", retry=False) from None
    except OSError as exc:
        raise MoveFailed(f"cannot look at the file: {exc.strerror or exc}", retry=True) from exc
    if (st.st_size, st.st_mtime_ns) != (size_bytes, mtime_ns):
        # Moving it would sort content that was never screened under this verdict.
        raise MoveFailed("the file changed after it was screened; left in place", retry=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return _link_then_unlink(src, folder, st)
    except OSError as exc:
        raise MoveFailed(f"cannot move to {folder}: {exc.strerror or exc}", retry=True) from exc


def find_moved(
    folder: Path, name: str, size_bytes: int, mtime_ns: int, sha256: str | None
) -> Path | None:
    """The copy of `name` an earlier, unrecorded move put into `folder` (same size, mtime, hash)."""
    misses = 0
    for candidate in candidate_names(folder, name):
        try:
            st = os.lstat(candidate)
        except OSError:
            misses += 1
            if misses > MISSES_BEFORE_GIVING_UP:
                return None
            continue
        if (st.st_size, st.st_mtime_ns) == (size_bytes, mtime_ns) and _hash_matches(
            candidate, sha256
        ):
            return candidate
    return None


def _hash_matches(path: Path, sha256: str | None) -> bool:
    if sha256 is None or not stat.S_ISREG(os.lstat(path).st_mode):
        return True  # size + mtime of a rejected (unhashed) file is all there is to go on
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest() == sha256


def _link_then_unlink(src: Path, folder: Path, st: os.stat_result) -> Path:
    for dest in candidate_names(folder, src.name):
        try:
            os.link(src, dest, follow_symlinks=False)
        except FileExistsError:
            if _same_inode(dest, st):  # our own link from an attempt that was interrupted
                _unlink_source(src)
                return dest
            continue
        except OSError as exc:
            if exc.errno in _NO_LINK_ERRNOS:
                return _copy_or_rename(src, folder, st)
            raise
        _unlink_source(src)
        return dest
    raise OSError(errno.EEXIST, f"no free name for {src.name} in {folder}")


def _unlink_source(src: Path) -> None:
    # Gone already is fine: the content is safe under the new name.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(src)


def _same_inode(path: Path, st: os.stat_result) -> bool:
    try:
        other = os.lstat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _copy_or_rename(src: Path, folder: Path, st: os.stat_result) -> Path:
    """Fallback without hard links: claim a name with O_EXCL, then fill it by rename or copy."""
    for dest in candidate_names(folder, src.name):
        try:
            fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        break
    else:
        raise OSError(errno.EEXIST, f"no free name for {src.name} in {folder}")
    try:
        # Same filesystem: replaces only the placeholder we created a moment ago.
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            os.unlink(dest)
            raise
        _copy_into(src, dest)
        os.unlink(src)
    return dest


def _copy_into(src: Path, dest: Path) -> None:
    """Copy across filesystems via a temp name, so `dest` never holds a partial file."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        shutil.copy2(src, tmp, follow_symlinks=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)  # over our own empty placeholder
    finally:
        tmp.unlink(missing_ok=True)


def backoff_s(failures: int, retry_max_s: float) -> float:
    """Delay before retry number `failures` (1, 2, 4, ... seconds, capped at retry_max_s)."""
    return float(min(retry_max_s, 2.0 ** max(failures - 1, 0)))
