"""The fuzz campaign's own rules (benchmarks/fuzz.py): what counts as a problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import fuzz


def test_the_same_bytes_with_other_outcomes_on_two_paths_are_a_problem() -> None:
    here = {"a.jpg": fuzz.DECODED, "b.png": "truncated", "c.gif": "not_an_image"}
    scan = {"a.jpg": ("classified", None), "b.png": ("rejected", "unreadable")}
    serve = {
        "a.jpg": ("classified", None),
        "b.png": ("rejected", "truncated"),
        "c.gif": ("rejected", "not_an_image"),
    }
    assert fuzz._disagreements(here, scan, serve) == [
        "outcomes differ: b.png: here truncated, scan unreadable, serve truncated",
        "outcomes differ: c.gif: here not_an_image, scan None, serve not_an_image",
    ]


@pytest.mark.slow
def test_a_small_campaign_records_every_file_once_on_both_paths(tmp_path: Path) -> None:
    result = fuzz.run(36, 11, tmp_path / "fuzz.json", tmp_path)
    assert result["problems"] == []
    for name in ("scan", "serve"):
        figures = result[name]
        assert figures["exit_code"] == 0
        assert figures["classified"] + figures["rejected"] == 36
        assert sum(figures["reasons"].values()) == figures["rejected"]
    assert result["serve"]["sorted"] == 36
    assert set(result["formats"]) == {"jpg", "png", "webp", "gif", "tif", "heic"}
