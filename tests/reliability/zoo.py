"""A zoo of hostile, odd and awkward inputs, with what the screener must record for each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.conftest import BRIGHT, DARK, render_image
from tests.reliability.conftest import png_bomb

LONG_NAME = "n" * 251 + ".jpg"  # 255 bytes: the longest name Linux allows


@dataclass(frozen=True, slots=True)
class Expect:
    """What must be recorded: status plus label (classified) or reason code (rejected)."""

    status: str
    detail: str


def _good(path: Path, color: tuple[int, int, int], fmt: str = "JPEG", mode: str = "RGB") -> None:
    render_image((64, 64), color, mode, noise=3.0).save(path, fmt)


def _truncated(path: Path, fmt: str) -> None:
    _good(path, BRIGHT, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _animated(path: Path, fmt: str) -> None:
    frames = [render_image((64, 64), BRIGHT), render_image((64, 64), DARK)]
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    render_image((96, 64), DARK, noise=3.0).save(path, "JPEG", exif=exif)


def _sparse(path: Path, size: int) -> None:
    # A JPEG signature, then a hole: costs no disk and no time, but stat() says 200 MB.
    with open(path, "wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(size)


def build_rejects(folder: Path) -> dict[str, Expect]:
    """Files that must be rejected, each with its reason code."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    _truncated(folder / "cut.jpg", "JPEG")
    _truncated(folder / "cut.png", "PNG")
    (folder / "text.jpg").write_text("just some notes\n", encoding="utf-8")
    (folder / "page.jpg").write_text("<html><body>not a face</body></html>", encoding="utf-8")
    (folder / "elf.jpg").write_bytes(Path("/bin/true").read_bytes()[:8192])
    png_bomb(folder / "bomb.png")
    _sparse(folder / "huge.jpg", 200_000_000)
    # A HEIC container header and nothing after it (HEIC itself is decoded: see formats).
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 256
    (folder / "photo.heic").write_bytes(heic)
    return {
        "zero.jpg": Expect("rejected", "empty"),
        "cut.jpg": Expect("rejected", "truncated"),
        "cut.png": Expect("rejected", "truncated"),
        "text.jpg": Expect("rejected", "not_an_image"),
        "page.jpg": Expect("rejected", "not_an_image"),
        "elf.jpg": Expect("rejected", "not_an_image"),
        "bomb.png": Expect("rejected", "too_many_pixels"),
        "huge.jpg": Expect("rejected", "too_large"),
        "photo.heic": Expect("rejected", "truncated"),
    }


def build_formats(folder: Path) -> dict[str, Expect]:
    """Unusual but valid images: each must be classified (bright = ai, dark = real)."""
    folder.mkdir(parents=True, exist_ok=True)
    _good(folder / "cmyk.jpg", BRIGHT, "JPEG", "CMYK")
    _good(folder / "deep.png", DARK, "PNG", "I;16")
    _good(folder / "palette.png", BRIGHT, "PNG", "P")
    render_image((64, 64), (0, 0, 0, 0), "RGBA").save(folder / "clear.png", "PNG")  # on white
    _animated(folder / "anim.gif", "GIF")  # first frame is bright
    _animated(folder / "anim.webp", "WEBP")
    _exif_rotated(folder / "rotated.jpg")
    _good(folder / "face.avif", BRIGHT, "AVIF")
    _good(folder / "phone.heic", DARK, "HEIF")
    return {
        "cmyk.jpg": Expect("classified", "ai"),
        "deep.png": Expect("classified", "real"),
        "palette.png": Expect("classified", "ai"),
        "clear.png": Expect("classified", "ai"),
        "anim.gif": Expect("classified", "ai"),
        "anim.webp": Expect("classified", "ai"),
        "rotated.jpg": Expect("classified", "real"),
        "face.avif": Expect("classified", "ai"),
        "phone.heic": Expect("classified", "real"),
    }


def build_names(folder: Path) -> dict[str, Expect]:
    """Good images with awkward names: all classified and sorted under the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {
        "with  spaces .jpg": DARK,
        "ünïcødé-顔-😀.jpg": BRIGHT,
        "new\nline.jpg": DARK,
        "-rf --leading-dash.jpg": BRIGHT,
        LONG_NAME: DARK,
        "<script>alert(1)<script>.jpg": BRIGHT,
    }
    for name, color in names.items():
        _good(folder / name, color)
    return {n: Expect("classified", "ai" if c == BRIGHT else "real") for n, c in names.items()}


def build_not_files(folder: Path, outside: Path) -> dict[str, str]:
    """Things that are not regular files inside the inbox: name -> what they are."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dir.jpg").mkdir()
    _good(folder / "dir.jpg" / "inner.jpg", DARK)  # the folder itself is walked, not opened
    outside.parent.mkdir(parents=True, exist_ok=True)
    _good(outside, BRIGHT)
    (folder / "link.jpg").symlink_to(outside)
    os.mkfifo(folder / "fifo.jpg")
    return {"dir.jpg": "folder", "link.jpg": "symlink", "fifo.jpg": "fifo"}
