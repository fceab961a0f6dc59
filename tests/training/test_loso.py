"""Leave one source out: the command on a tiny dataset with a test-only source."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.training.conftest import write_face
from watcher import cli

SOURCES = {0: ("cam_a", "cam_b"), 1: ("gen_a", "gen_b")}


def _dataset(root: Path) -> Path:
    """Two sources per class in every split, and a generator only the test split holds."""
    rows: list[dict[str, object]] = []
    seed = 0
    layout = [(split, label, source, 6) for split in ("train", "validate", "test")
              for label in (0, 1) for source in SOURCES[label]]  # fmt: skip
    layout.append(("test", 1, "gen_future", 4))
    for split, label, source, count in layout:
        for i in range(count):
            rel = f"{split}/{label}/{source}_{i:02d}.jpg"
            write_face(root / rel, label, seed, size=48)
            seed += 1
            rows.append({"path": rel, "split": split, "label": label, "source": source})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "split", "label", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def loso_command(tmp_path: Path, weights: Path, *extra: str) -> tuple[list[str], Path]:
    """The `loso` command line on a fresh tiny dataset (its cache in tmp_path), and where it
    writes the table."""
    data = _dataset(tmp_path / "data")
    out = tmp_path / "loso.json"
    config = tmp_path / "config.toml"
    config.write_text(f'[training]\ncache_dir = "{tmp_path / "cache"}"\n')
    args = [
        "--config", str(config), "loso", "--data", str(data), "--arch", "mobilenet_ms",
        "--image-size", "64", "--backbone-weights", str(weights),
        "--feature-passes", "2", "--head-c", "0.1", *extra, "--out", str(out),
    ]  # fmt: skip
    return args, out


@pytest.mark.slow
def test_the_command_holds_out_every_trainable_source(
    tmp_path: Path, random_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, out = loso_command(tmp_path, random_weights)
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    table = json.loads(out.read_text())
    # Every source with training pictures, real ones too; never the test-only one.
    assert set(table["sources"]) == {"cam_a", "cam_b", "gen_a", "gen_b"}
    assert table["not_held_out"] == ["gen_future"]
    for source, row in table["sources"].items():
        assert row["class"] == ("real" if source.startswith("cam") else "ai")
        assert row["pictures"] == 18  # all three splits of the held-out source
        assert 0.0 <= row["auc"] <= 1.0 and set(row["views"]) >= {"whole", "patch"}
    aucs = [row["auc"] for row in table["sources"].values()]
    assert table["mean_auc"] == pytest.approx(sum(aucs) / 4)
    assert table["worst_auc"] == min(aucs) and table["sources"][table["worst_source"]]
    assert "mean AUC" in printed and "cam_a" in printed
    # Brightness separates the classes here, whichever source is missing.
    assert table["mean_auc"] > 0.8
    # The features are cached: a second run with another head only refits.
    cached = sorted((tmp_path / "cache").glob("*-rows.npz"))
    assert len(cached) == 5  # train: plain, one degraded, self-blend; validate; test
    again = [*args[:-4], "--head-c", "1.0"]
    assert cli.main(again) == 0
    assert sorted((tmp_path / "cache").glob("*-rows.npz")) == cached
