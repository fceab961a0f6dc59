"""`python -m benchmarks.fuzz`: a seeded fuzz campaign of hostile files through `scan` and `serve`.

Valid JPEG, PNG, WebP, GIF, TIFF and HEIC files (with EXIF, XMP and text blocks) are mutated:
bytes flipped, files cut short, huge dimensions declared, chunk and segment lengths broken,
hostile EXIF / XMP / C2PA blocks inserted, mutations combined. Then:
1. every file is read and decoded here, one at a time, as a decoder thread of the daemon does
   (provenance and views for the bundled model), each timed; a watchdog names a file that
   runs past the limit;
2. `scan` screens the whole folder, in a process of its own;
3. `serve --once` screens and sorts the same files from an inbox.
Every file must be recorded (classified or rejected with a reason), each once; no process may
crash. The figures (and any file that broke a rule) go to a JSON file and the terminal.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import logging
import os
import random
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from benchmarks.procs import REPO, BenchmarkError, run_child
from benchmarks.service import cli, make_workspace

logger = logging.getLogger(__name__)

DEFAULT_OUT: Final = REPO / "benchmarks" / "results" / "fuzz.json"
LIMIT_S: Final[float] = 5.0
# The outcome of a file the model could score (else the rejection's reason code).
DECODED: Final[str] = "decoded"
Mutator = Callable[[bytes, random.Random], bytes]


def _base_picture(rng: random.Random, size: int = 96) -> Image.Image:
    """A small picture with structure (gradients, a blob, noise), different per seed."""
    gen = np.random.default_rng(rng.randrange(1 << 30))
    ys, xs = np.mgrid[0:size, 0:size]
    base = np.stack([xs * 2.0, ys * 2.0, (xs + ys) * 1.0], axis=-1) + gen.normal(
        0, 12, (size, size, 3)
    )
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


XMP: Final[bytes] = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool='
    b'"Camera 1.0"/></rdf:RDF></x:xmpmeta>'
)


def seeds(rng: random.Random) -> dict[str, bytes]:
    """One valid file per format, carrying metadata where the format has a place for it."""
    import detector.imageio  # noqa: F401 (registers the HEIF plugin, for writing HEIC too)

    picture = _base_picture(rng)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "Maker", "Model X", "Editor 2.0"
    out: dict[str, bytes] = {}
    for ext, fmt, extra in (
        ("jpg", "JPEG", {"exif": exif.tobytes(), "xmp": XMP, "quality": 90}),
        ("png", "PNG", {"exif": exif.tobytes()}),
        ("webp", "WEBP", {"exif": exif.tobytes(), "xmp": XMP}),
        ("gif", "GIF", {}),
        ("tif", "TIFF", {"exif": exif.tobytes()}),
        ("heic", "HEIF", {"exif": exif.tobytes(), "xmp": XMP, "quality": 80}),
    ):
        buf = io.BytesIO()
        picture.save(buf, fmt, **extra)
        out[ext] = buf.getvalue()
    return out


def flip(data: bytes, rng: random.Random) -> bytes:
    """1-32 random bytes replaced."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 32)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut anywhere (the header, the middle, the last bytes)."""
    return data[: rng.randrange(1, len(data))]


def huge_size(data: bytes, rng: random.Random) -> bytes:
    """Declared width and height made huge where the format says them."""
    big = rng.choice([0xFFFF, 0x7FFF, 40_000, 1])
    out = bytearray(data)
    if data[:3] == b"\xff\xd8\xff":
        pos = data.find(b"\xff\xc0")
        if pos > 0:
            out[pos + 5 : pos + 9] = struct.pack(">HH", big, big)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        out[16:24] = struct.pack(">II", big * 1000, big)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        out[6:10] = struct.pack("<HH", big, big)
    elif data[:4] == b"RIFF":
        out[4:8] = struct.pack("<I", 0xFFFFFFF0)  # RIFF size past the file
    else:
        pos = data.find(b"ispe")
        if pos > 0:
            out[pos + 8 : pos + 16] = struct.pack(">II", big * 1000, big * 1000)
        else:
            return flip(data, rng)
    return bytes(out)


def broken_chunk(data: bytes, rng: random.Random) -> bytes:
    """A chunk or segment length set to nonsense (zero, one byte, gigabytes)."""
    out = bytearray(data)
    length = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF])
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        out[8:12] = struct.pack(">I", length)  # IHDR's length
    elif data[:3] == b"\xff\xd8\xff":
        pos = data.find(b"\xff\xe1")
        if pos > 0:
            out[pos + 2 : pos + 4] = struct.pack(">H", length & 0xFFFF)
    else:
        pos = rng.randrange(8, max(9, len(data) - 4))
        out[pos : pos + 4] = struct.pack(">I", length)
    return bytes(out)


def _jpeg_segment(data: bytes, marker: bytes, payload: bytes) -> bytes:
    """`payload` as one more segment right after SOI (lengths over 64 KiB are cut)."""
    payload = payload[:65533]
    return data[:2] + marker + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def hostile_exif(data: bytes, rng: random.Random) -> bytes:
    """An EXIF block whose IFD claims thousands of entries and points at itself."""
    ifd = struct.pack("<H", rng.choice([0xFFFF, 4096, 1]))
    entries = b"".join(
        struct.pack("<HHII", rng.randrange(1 << 16), rng.randrange(1, 13), 0xFFFFFFF, 8)
        for _ in range(rng.randint(1, 64))
    )
    block = b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + ifd + entries + struct.pack("<I", 8)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_segment(data, b"\xff\xe1", block)
    return data + block


def hostile_xmp(data: bytes, rng: random.Random) -> bytes:
    """XMP with an entity expansion bomb, or one packet of megabytes."""
    if rng.random() < 0.5:
        body = (
            b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;&b;&b;&b;</x:xmpmeta>'
        )
    else:
        body = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b"A" * 2_000_000 + b"</x:xmpmeta>"
    packet = b"http://ns.adobe.com/xap/1.0/\x00" + body
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_segment(data, b"\xff\xe1", packet)
    return data[: len(data) // 2] + body + data[len(data) // 2 :]


def hostile_c2pa(data: bytes, rng: random.Random) -> bytes:
    """A JUMBF box labelled as a C2PA manifest store, full of garbage."""
    garbage = bytes(rng.randrange(256) for _ in range(rng.randint(16, 4000)))
    jumbf = b"JP\x00\x01" + struct.pack(">I", 1) + b"jumb" + b"jumd" + b"c2pa\x00" + garbage
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_segment(data, b"\xff\xeb", jumbf)
    return data + jumbf


MUTATORS: Final[dict[str, Mutator]] = {
    "flip": flip,
    "truncate": truncate,
    "huge_size": huge_size,
    "broken_chunk": broken_chunk,
    "hostile_exif": hostile_exif,
    "hostile_xmp": hostile_xmp,
    "hostile_c2pa": hostile_c2pa,
}


def make_files(folder: Path, count: int, seed: int) -> dict[str, str]:
    """`count` mutated files in `folder`; name -> how it was made."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    bases = [seeds(rng) for _ in range(8)]
    for i in range(count):
        ext, data = rng.choice(list(rng.choice(bases).items()))
        names = rng.sample(list(MUTATORS), k=1 if rng.random() < 0.8 else 2)
        for name in names:
            data = MUTATORS[name](data, rng)
        file_name = f"{i:05d}-{'+'.join(names)}.{ext}"
        path = folder / file_name
        path.write_bytes(data)
        # An hour old: not a file still being written, which the daemon would hold back
        # ([watcher] incomplete_hold_s) when it looks truncated.
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        made[file_name] = f"{ext}: {'+'.join(names)}"
    return made


def time_each(folder: Path, limit_s: float) -> dict[str, Any]:
    """Read and decode every file as a decoder thread does; per-file seconds, slowest first."""
    from detector.bundle import bundled_model_dir
    from detector.classifier import Classifier
    from detector.errors import ImageRejected
    from detector.imageio import LoadLimits
    from detector.provenance import read_provenance

    spec = Classifier.load(bundled_model_dir()).spec
    limits = LoadLimits()
    times: dict[str, float] = {}
    outcome: dict[str, str] = {}
    current: list[Any] = [None, 0.0]

    def watchdog() -> None:
        while current[0] != "done":
            name, since = current
            if name and time.perf_counter() - since > limit_s:
                logger.error("%s is taking longer than %.0f s", name, limit_s)
                time.sleep(limit_s)
            time.sleep(0.2)

    threading.Thread(target=watchdog, daemon=True).start()
    for path in sorted(folder.iterdir()):
        current[:] = [path.name, time.perf_counter()]
        data = path.read_bytes()
        read_provenance(data)
        try:
            spec.decode(data, limits)
            outcome[path.name] = DECODED
        except ImageRejected as exc:
            outcome[path.name] = exc.code
        except Exception as exc:  # a bug the daemon would record as an internal error
            outcome[path.name] = f"internal error {exc!r}"
        times[path.name] = time.perf_counter() - current[1]
    current[0] = "done"
    ordered = sorted(times.items(), key=lambda item: -item[1])
    values = np.array(list(times.values()))
    return {
        "files": len(times),
        "outcomes": dict(collections.Counter(outcome.values())),
        "each": outcome,
        "max_s": round(float(values.max()), 3),
        "p99_s": round(float(np.percentile(values, 99)), 4),
        "mean_ms": round(1000 * float(values.mean()), 2),
        "over_limit": [name for name, s in ordered if s > limit_s],
        "slowest": [[name, round(s, 3)] for name, s in ordered[:5]],
    }


def recorded(db: Path) -> dict[str, tuple[str, str | None]]:
    """file name -> (state, reason code) of every row in the files table."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT path, state, reason_code FROM files").fetchall()
    return {Path(path).name: (state, code) for path, state, code in rows}


def internal_errors(db: Path) -> list[str]:
    """Files the daemon set aside after a bug (decoding or screening raised), not bad input."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT path, reason FROM files WHERE reason LIKE 'internal error%'"
        ).fetchall()
    return [f"internal error: {Path(path).name}: {reason}" for path, reason in rows]


def _check_recorded(rows: dict[str, tuple[str, str | None]], made: dict[str, str]) -> list[str]:
    missing = sorted(set(made) - set(rows))
    unfinished = sorted(
        n for n, (state, _) in rows.items() if state not in ("classified", "rejected")
    )
    return [f"not recorded: {n}" for n in missing] + [f"not finished: {n}" for n in unfinished]


def _outcome(row: tuple[str, str | None] | None) -> str | None:
    if row is None:
        return None
    state, code = row
    return DECODED if state == "classified" else code


def _disagreements(
    decoded: dict[str, str],
    scan_rows: dict[str, tuple[str, str | None]],
    serve_rows: dict[str, tuple[str, str | None]],
) -> list[str]:
    """The same bytes must get the same outcome here, in `scan` and in `serve`."""
    problems = []
    for name, here in sorted(decoded.items()):
        scan, serve = _outcome(scan_rows.get(name)), _outcome(serve_rows.get(name))
        if not here == scan == serve:
            problems.append(f"outcomes differ: {name}: here {here}, scan {scan}, serve {serve}")
    return problems


def run(count: int, seed: int, out: Path, workdir: Path) -> dict[str, Any]:
    """The whole campaign; returns (and writes) its figures."""
    from detector.bundle import bundled_model_dir

    model = bundled_model_dir()
    scan_ws = make_workspace(workdir, "scan", model)
    files = scan_ws.root / "files"
    made = make_files(files, count, seed)
    logger.info("made %d files; timing each", count)
    per_file = time_each(files, LIMIT_S)
    logger.info("scan over %d files", count)
    scanned = run_child(cli(scan_ws, "scan", str(files)), scan_ws.log("scan"), 3600.0)
    scan_rows = recorded(scan_ws.db)
    serve_ws = make_workspace(workdir, "serve", model)
    make_files(serve_ws.inbox, count, seed)
    logger.info("serve --once over %d files", count)
    served = run_child(cli(serve_ws, "serve", "--once"), serve_ws.log("serve"), 3600.0)
    serve_rows = recorded(serve_ws.db)
    sorted_files = [
        p for p in serve_ws.output.rglob("*") if p.is_file() and ".verdict" not in p.name
    ]
    problems = _check_recorded(scan_rows, made) + _check_recorded(serve_rows, made)
    problems += _disagreements(per_file.pop("each"), scan_rows, serve_rows)
    problems += internal_errors(scan_ws.db) + internal_errors(serve_ws.db)
    problems += [f"over {LIMIT_S:g} s: {n}" for n in per_file["over_limit"]]
    if len(sorted_files) != count:
        problems.append(f"serve sorted {len(sorted_files)} of {count} files")
    result = {
        "files": count,
        "seed": seed,
        "made_by": dict(collections.Counter(v.split(": ")[1] for v in made.values())),
        "formats": dict(collections.Counter(v.split(":")[0] for v in made.values())),
        "per_file": per_file,
        "scan": _process_figures(scanned, scan_rows),
        "serve": _process_figures(served, serve_rows) | {"sorted": len(sorted_files)},
        "problems": problems,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _process_figures(result: Any, rows: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    states = collections.Counter(state for state, _ in rows.values())
    return {
        "exit_code": result.returncode,
        "wall_s": round(result.wall_s, 1),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "classified": states["classified"],
        "rejected": states["rejected"],
        "reasons": dict(collections.Counter(code for _, code in rows.values() if code)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the campaign and print its figures; exit 1 when any file broke a rule."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000, help="files to make (10,000)")
    parser.add_argument("--seed", type=int, default=20261205, help="seed of the campaign")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        try:
            result = run(args.files, args.seed, args.out, Path(tmp))
        except BenchmarkError as exc:
            print(f"fuzz: a process failed: {exc}", file=sys.stderr)
            return 1
    per = result["per_file"]
    print(f"{result['files']} files (seed {result['seed']}): {result['formats']}")
    print(f"read + decode per file: mean {per['mean_ms']} ms, p99 {per['p99_s']} s, "
          f"max {per['max_s']} s; over {LIMIT_S:g} s: {len(per['over_limit'])}")  # fmt: skip
    for name in ("scan", "serve"):
        r = result[name]
        print(f"{name}: exit {r['exit_code']}, {r['classified']} classified, {r['rejected']} "
              f"rejected, {r['wall_s']} s, peak RSS {r['peak_rss_mb']} MB")  # fmt: skip
    print("problems:", *(result["problems"] or ["none"]), sep="\n  ")
    print(f"figures written to {args.out}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
