"""Reading the three data layouts and the kagglehub download boundary."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.training.conftest import SOURCES, make_kaggle, write_face
from training import datasets
from training.datasets import DatasetError, load_layout


def test_kaggle_layout_reads_splits_labels_and_manifest_sources(kaggle_dir: Path) -> None:
    splits = load_layout(kaggle_dir)
    assert splits.layout == "kaggle"
    assert [len(splits.split(n)) for n in ("train", "validate", "test")] == [24, 12, 12]
    for sample in splits.all():
        assert sample.label == int(sample.path.parent.name)
        assert sample.source == sample.path.name.split("_0")[0]
        assert sample.source in SOURCES[sample.label]
    assert splits.distribution()["train"] == {
        "total": 24,
        "real": 12,
        "ai": 12,
        "sources": {"cam_a": 6, "cam_b": 6, "gen_a": 6, "gen_b": 6},
    }


@pytest.mark.parametrize("val_name", ["valid", "val"])
def test_kaggle_layout_accepts_other_validation_folder_names(tmp_path: Path, val_name: str) -> None:
    splits = load_layout(make_kaggle(tmp_path / "d", val_name=val_name))
    assert len(splits.validate) == 12
    assert splits.split(val_name) == splits.validate
    assert {s.split for s in splits.validate} == {"validate"}


def test_kaggle_layout_without_manifest_has_unknown_sources(tmp_path: Path) -> None:
    splits = load_layout(make_kaggle(tmp_path / "d", manifest=False))
    assert {s.source for s in splits.all()} == {datasets.UNKNOWN_SOURCE}


def test_layout_found_below_download_folders(tmp_path: Path) -> None:
    # kagglehub unpacks into <cache>/versions/1/<Dataset name>/train/...
    make_kaggle(tmp_path / "versions" / "Real vs AI")
    splits = load_layout(tmp_path / "versions")
    assert splits.root == tmp_path / "versions" / "Real vs AI"
    assert len(splits.train) == 24


def test_plain_layout_is_split_by_class_and_source(plain_dir: Path) -> None:
    splits = load_layout(plain_dir)
    assert splits.layout == "plain"
    for name, expected in (("train", 6), ("validate", 2), ("test", 2)):
        counts = Counter(s.source for s in splits.split(name))
        # 10 images per source -> 6 / 2 / 2 in every split, for every source.
        assert counts == {src: expected for srcs in SOURCES.values() for src in srcs}
    assert {s.split for s in splits.train} == {"train"}
    assert len({s.path for s in splits.all()}) == 40


def test_plain_split_is_deterministic_and_seeded(plain_dir: Path, tmp_path: Path) -> None:
    first = load_layout(plain_dir, seed=7)
    assert load_layout(plain_dir, seed=7) == first
    assert load_layout(plain_dir, seed=8).test != first.test
    # Moving the folder keeps the same split (keyed on names, not absolute paths).
    moved = Path(shutil.copytree(plain_dir, tmp_path / "moved"))
    assert [s.path.name for s in load_layout(moved, seed=7).test] == [
        s.path.name for s in first.test
    ]


def test_adding_images_to_one_source_leaves_other_sources_in_place(plain_dir: Path) -> None:
    before = load_layout(plain_dir)
    write_face(plain_dir / "ai" / "gen_a_new.jpg", 1, seed=99)
    with open(plain_dir / "manifest.csv", "a", encoding="utf-8") as fh:
        fh.write("ai/gen_a_new.jpg,,1,ai,gen_a,\n")
    after = load_layout(plain_dir)
    assert len(after.all()) == len(before.all()) + 1
    others = {s.path: s.split for s in before.all() if s.source != "gen_a"}
    assert {s.path: s.split for s in after.all() if s.source != "gen_a"} == others


def test_plain_layout_custom_folder_names_and_subfolder_sources(tmp_path: Path) -> None:
    root = tmp_path / "custom"
    for label, folder in enumerate(("photos", "fakes")):
        for sub in ("x", "y"):
            for i in range(5):
                write_face(root / folder / sub / f"{i}.png", label, seed=label * 100 + i)
    splits = load_layout(root, real_dir="photos", ai_dir="fakes")
    assert {s.source for s in splits.all()} == {"x", "y"}
    assert Counter(s.label for s in splits.train) == {0: 6, 1: 6}
    assert Counter(s.label for s in splits.all()) == {0: 10, 1: 10}


def test_unusable_folders_raise_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_layout(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither"):
        load_layout(tmp_path / "empty")
    root = make_kaggle(tmp_path / "one_class")
    for path in (root / "train" / "1").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="both classes"):
        load_layout(root)


def test_non_image_files_are_ignored(kaggle_dir: Path) -> None:
    (kaggle_dir / "train" / "0" / "notes.txt").write_text("hello")
    (kaggle_dir / "train" / "0" / ".hidden.jpg").write_bytes(b"x")
    assert len(load_layout(kaggle_dir).train) == 24


def test_download_kaggle_calls_kagglehub_and_reads_the_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import kagglehub

    downloaded = make_kaggle(tmp_path / "kagglehub" / "datasets" / "x" / "versions" / "1")
    calls: list[str] = []

    def fake_download(handle: str, *args: object, **kwargs: object) -> str:
        calls.append(handle)
        return str(downloaded)

    # Only the network call is replaced; our reader runs for real on the result.
    monkeypatch.setattr(kagglehub, "dataset_download", fake_download)
    path = datasets.download_kaggle("philosopher0808/real-vs-ai-generated-faces-dataset")
    assert calls == ["philosopher0808/real-vs-ai-generated-faces-dataset"]
    assert load_layout(path).layout == "kaggle"


def test_download_failure_explains_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import kagglehub

    def offline(handle: str, *args: object, **kwargs: object) -> str:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(DatasetError, match="KAGGLE_USERNAME"):
        datasets.download_kaggle("someone/something")


def test_fingerprint_depends_on_content_and_labels(kaggle_dir: Path) -> None:
    splits = load_layout(kaggle_dir)
    fp = datasets.fingerprint(splits.all())
    assert fp == datasets.fingerprint(list(reversed(splits.all())))
    assert len(fp) == 64
    write_face(splits.train[0].path, 0, seed=12345)  # same name, new pixels
    assert datasets.fingerprint(splits.all()) != fp


def test_holding_out_a_source_keeps_it_only_in_test(kaggle_dir: Path) -> None:
    splits = load_layout(kaggle_dir)
    held = splits.holding_out(["gen_b"])
    assert {s.source for s in held.train} == {"cam_a", "cam_b", "gen_a"}
    assert {s.source for s in held.validate} == {"cam_a", "cam_b", "gen_a"}
    assert held.test == splits.test  # the unseen source is still measured
    assert len(held.train) == len(splits.train) - 6
    assert held.holding_out([]) is held


def test_holding_out_unknown_source_or_a_whole_class_is_refused(kaggle_dir: Path) -> None:
    splits = load_layout(kaggle_dir)
    with pytest.raises(DatasetError, match=r"unknown source.*gen_z.*known: cam_a"):
        splits.holding_out(["gen_z"])
    with pytest.raises(DatasetError, match="leaves no ai images in the train split"):
        splits.holding_out(["gen_a", "gen_b"])
