"""Exceptions raised by the detector package."""

from __future__ import annotations

from typing import Final

# Every reason an input can be set aside; callers store the code and show the reason.
REJECT_CODES: Final[frozenset[str]] = frozenset(
    {
        "empty",
        "truncated",
        "not_an_image",
        "unsupported_format",
        "too_large",
        "too_many_pixels",
        "unreadable",
        "not_a_file",
        "vanished",
    }
)


class ImageRejected(Exception):
    """An input that cannot be screened; `code` is machine-readable, `reason` a human sentence."""

    def __init__(self, code: str, reason: str) -> None:
        if code not in REJECT_CODES:
            raise ValueError(f"unknown rejection code {code!r}")
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Keeps the two-argument constructor picklable (e.g. across process pools).
        return (type(self), (self.code, self.reason))


class ModelLoadError(Exception):
    """A model bundle is missing, corrupt, or fails its probe batch."""
