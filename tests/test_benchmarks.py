"""benchmarks/: the quick run produces every section with positive numbers (no timing asserts)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from benchmarks import report
from benchmarks.inputs import (
    encode_variant,
    photo_variant,
    synthetic_sources,
    unique_copy,
    with_comment,
)
from benchmarks.run import SECTIONS, parse_args

ROOT = Path(__file__).resolve().parents[1]


def _positive(node: Any, *keys: str) -> None:
    for key in keys:
        assert isinstance(node, dict) and key in node, f"missing {key!r} in {node!r}"
        node = node[key]
    assert isinstance(node, int | float) and node > 0, f"{'.'.join(keys)} = {node!r}"


def test_comment_segment_changes_sha256_not_pixels() -> None:
    jpeg = encode_variant(synthetic_sources(1)[0], 64)
    tagged = [with_comment(jpeg, f"copy {i}") for i in range(2)]
    assert len({hashlib.sha256(b).hexdigest() for b in (jpeg, *tagged)}) == 3
    pixels = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in (jpeg, *tagged)]
    assert all(np.array_equal(pixels[0], p) for p in pixels[1:])


def test_a_heic_copy_is_a_distinct_file_with_the_same_pixels_and_metadata() -> None:
    from detector.imageio import LoadLimits, decode_picture
    from detector.provenance import read_provenance

    heic = photo_variant(synthetic_sources(4), 0, (320, 240), "HEIF")
    copies = [unique_copy(heic, f"copy {i}") for i in range(2)]
    assert len({hashlib.sha256(b).hexdigest() for b in (heic, *copies)}) == 3
    pictures = [decode_picture(b, None, LoadLimits()) for b in (heic, *copies)]
    assert all(p.format == "HEIF" and p.rgb.shape == (240, 320, 3) for p in pictures)
    assert all(np.array_equal(pictures[0].rgb, p.rgb) for p in pictures[1:])
    assert read_provenance(copies[0]) == read_provenance(heic)


def test_only_rejects_unknown_measurements() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--only", "latency,bogus"])
    assert parse_args(["--only", "backlog,startup"]).sections == ["startup", "backlog"]


def test_targets_pass_and_miss_from_numbers() -> None:
    results = {
        "params": {"serve_batch_size": 32},
        "model": {"picture_views": 2},
        "model_only": {"litert": {"32": 300.0}},
        "end_to_end": {
            "256": {"images_per_s": 80.0, "backend": "litert", "mean_faces": 1.0},
            "1024": {"images_per_s": 70.0, "backend": "litert", "mean_faces": 2.0},
        },
        "reference": {"256": {"images_per_s": 5.0}},
        "backlog": {
            "2000": {"peak_rss_mb": 300.0, "wall_s": 10.0, "process_images_per_s": 200.0},
            "10000": {"peak_rss_mb": 400.0, "wall_s": 50.0, "process_images_per_s": 200.0},
        },
    }
    passed = {t.name: t.passed for t in report.evaluate(results)}
    # Ceilings: 300 views/s over 3 views per picture (whole, patch, a face) = 100 pictures/s;
    # over 4 views = 75 pictures/s.
    assert passed["e2e 256 px vs the model's ceiling"] is False  # 80 %
    assert passed["e2e 1024 px vs the model's ceiling"] is True  # 70 of 75: 93 %
    assert passed["e2e 256 px vs per-file reference"] is False  # 16x
    assert passed["backlog 10000 peak RSS"] is True
    assert passed["peak RSS growth 2000 -> 10000 files"] is False  # +33 %


def test_the_ceiling_is_read_at_the_size_serving_calls_the_model_with() -> None:
    results = {
        "params": {"serve_batch_size": 32},
        "model": {"picture_views": 2},
        "model_only": {"litert": {"8": 360.0, "32": 300.0}, "views_per_call": {"litert": 8}},
        "end_to_end": {"256": {"images_per_s": 100.0, "backend": "litert", "mean_faces": 1.0}},
    }
    assert report.model_reference(results) == ("litert", "8", 360.0)
    row = next(t for t in report.evaluate(results) if t.name.startswith("e2e 256 px vs the model"))
    # 360 views/s over 3 views = 120 pictures/s; 100 of them is 83 %, under the 85 % target.
    assert row.passed is False and "litert b8" in row.measured


@pytest.mark.slow
def test_quick_run_reports_every_section(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--model", str(tiny_bundle),
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "measurement" in proc.stdout and "PASS" in proc.stdout + "MISS"
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["errors"] == {}
    assert set(SECTIONS) <= set(results)
    assert set(report.E2E_RUNS) == set(results["end_to_end"])  # phone JPEG and HEIC included
    assert results["machine"]["cpu_model"] and results["model"]["has_tflite"]
    for backend in ("keras", "litert"):
        for batch in ("1", "8", "32", "64"):
            _positive(results, "model_only", backend, batch)
    for size in ("256", "1024"):
        _positive(results, "end_to_end", size, "images_per_s")
        assert results["end_to_end"][size]["moved"] == results["end_to_end"][size]["files"]
        _positive(results, "reference", size, "images_per_s")
    for way in ("rename_in_inbox", "move_in"):
        _positive(results, "latency", way, "p50_ms")
        _positive(results, "latency", way, "p99_ms")
    for backlog in ("20", "50"):
        _positive(results, "backlog", backlog, "peak_rss_mb")
        _positive(results, "backlog", backlog, "wall_s")
    _positive(results, "startup", "scan_one_s")
    _positive(results, "startup", "serve_first_verdict_s")
    assert "recorded" in results["training"]
    assert results["targets"] and all(
        t["passed"] in (True, False, None) for t in results["targets"]
    )
