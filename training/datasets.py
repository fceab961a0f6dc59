"""Labelled images on disk: Kaggle layout, plain {real,ai}/ folders, or a kagglehub download.

Layouts (0 = real, 1 = ai, as everywhere in the project):
- Kaggle: `{train, validate|valid|val, test}/{0,1}/*` (+ optional manifest.csv naming sources);
- plain: `{real,ai}/**` (folder names configurable), split here deterministically, stratified by
  class and by source (manifest.csv `source` column, else the first sub-folder, else "unknown").
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

SPLITS: Final[tuple[str, ...]] = ("train", "validate", "test")
# Folder names accepted for the validation split of the Kaggle layout.
VALIDATION_NAMES: Final[tuple[str, ...]] = ("validate", "valid", "val", "validation")
CLASS_NAMES: Final[tuple[str, str]] = ("real", "ai")
IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".heic"}
)
MANIFEST: Final[str] = "manifest.csv"
# Manifest columns that describe the file; every other column is an attribute of the person or
# picture (age, gender, ...), reported per group by training.fairness.
FILE_COLUMNS: Final[frozenset[str]] = frozenset(
    {"path", "split", "label", "class", "source", "generator"}
)
UNKNOWN_SOURCE: Final[str] = "unknown"
# Plain layout: share of each (class, source) group that goes to train / validate (rest: test).
SPLIT_FRACTIONS: Final[tuple[float, float]] = (0.6, 0.2)


class DatasetError(ValueError):
    """A data folder that cannot be used for training or evaluation."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled image file."""

    path: Path
    label: int  # 0 = real, 1 = ai
    split: str  # "train" | "validate" | "test"
    source: str  # where it came from (manifest `source`), for per-source metrics
    # Other manifest columns with a value for this picture (e.g. age, gender): (column, value).
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DatasetSplits:
    """A dataset divided into train / validate / test."""

    root: Path
    layout: str  # "kaggle" | "plain"
    train: tuple[Sample, ...]
    validate: tuple[Sample, ...]
    test: tuple[Sample, ...]
    # Every data folder these splits came from (several after `merge`).
    roots: tuple[Path, ...] = ()
    # Sources `holding_out` removed from train and validate, and the splits before that
    # (so work done per picture, like backbone features, can be shared between such runs).
    held_out: tuple[str, ...] = ()
    before_hold_out: DatasetSplits | None = None

    def split(self, name: str) -> tuple[Sample, ...]:
        """The samples of one split ('val'/'valid' are accepted for 'validate')."""
        key = "validate" if name in VALIDATION_NAMES else name
        if key not in SPLITS:
            raise ValueError(f"unknown split {name!r} (known: {', '.join(SPLITS)})")
        samples: tuple[Sample, ...] = getattr(self, key)
        return samples

    def all(self) -> tuple[Sample, ...]:
        """Every sample, train then validate then test."""
        return self.train + self.validate + self.test

    def distribution(self) -> dict[str, dict[str, Any]]:
        """Per split: count per class and per source (JSON-safe)."""
        return {name: class_distribution(self.split(name)) for name in SPLITS}

    def holding_out(self, sources: Iterable[str]) -> DatasetSplits:
        """These splits with `sources` removed from train and validate, kept in test.

        The test split then measures how the model does on a source (a generator, a camera
        population) it never saw: the closest this dataset gets to the unseen faces it will meet
        in an inbox.
        """
        names = frozenset(sources)
        if not names:
            return self
        known = {s.source for s in self.all()}
        unknown = sorted(names - known)
        if unknown:
            raise DatasetError(
                f"cannot hold out unknown source(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        train = tuple(s for s in self.train if s.source not in names)
        validate = tuple(s for s in self.validate if s.source not in names)
        for split, samples in (("train", train), ("validate", validate)):
            missing = [CLASS_NAMES[c] for c in (0, 1) if not any(s.label == c for s in samples)]
            if missing:
                raise DatasetError(
                    f"holding out {', '.join(sorted(names))} leaves no {missing[0]} images "
                    f"in the {split} split"
                )
        original = self.before_hold_out or self
        held = tuple(sorted(names | set(self.held_out)))
        return replace(
            self, train=train, validate=validate, held_out=held, before_hold_out=original
        )


def merge(parts: Sequence[DatasetSplits]) -> DatasetSplits:
    """Several datasets as one: each split is the union of theirs (sources stay distinct)."""
    if not parts:
        raise DatasetError("no training data given")
    if len(parts) == 1:
        return replace(parts[0], roots=parts[0].roots or (parts[0].root,))
    roots = tuple(r for p in parts for r in (p.roots or (p.root,)))
    return DatasetSplits(
        root=parts[0].root,
        layout="+".join(p.layout for p in parts),
        train=tuple(s for p in parts for s in p.train),
        validate=tuple(s for p in parts for s in p.validate),
        test=tuple(s for p in parts for s in p.test),
        roots=roots,
    )


def class_distribution(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts per class name and per source of some samples."""
    classes = Counter(CLASS_NAMES[s.label] for s in samples)
    return {
        "total": len(samples),
        **{name: classes.get(name, 0) for name in CLASS_NAMES},
        "sources": dict(sorted(Counter(s.source for s in samples).items())),
    }


def format_distribution(splits: DatasetSplits) -> str:
    """Human-readable class distribution table, one line per split."""
    lines = []
    for name, dist in splits.distribution().items():
        sources = ", ".join(f"{k} {v}" for k, v in dist["sources"].items())
        lines.append(
            f"{name:>8}: {dist['total']:5d} images  real {dist['real']:5d}  ai {dist['ai']:5d}"
            f"  ({sources})"
        )
    return "\n".join(lines)


def load_layout(
    root: Path, *, real_dir: str = "real", ai_dir: str = "ai", seed: int = 1337
) -> DatasetSplits:
    """Read a Kaggle-layout or plain {real,ai}/ folder (searched up to two levels down)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    for candidate in _candidate_roots(root):
        if _kaggle_split_dirs(candidate) is not None:
            return _load_kaggle(candidate)
        if (candidate / real_dir).is_dir() and (candidate / ai_dir).is_dir():
            return _load_plain(candidate, real_dir, ai_dir, seed)
    raise DatasetError(
        f"{root} has neither the Kaggle layout {{train,validate|valid|val,test}}/{{0,1}}/ "
        f"nor {real_dir}/ and {ai_dir}/ class folders"
    )


def _candidate_roots(root: Path) -> list[Path]:
    # kagglehub unpacks archives with their own top folder(s), e.g. <cache>/1/Dataset/train.
    found = [root]
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found.append(child)
        found.extend(sorted(p for p in child.iterdir() if p.is_dir()))
    return found


def _kaggle_split_dirs(root: Path) -> dict[str, Path] | None:
    """{split: folder} when `root` is in Kaggle layout, else None."""
    val = next((root / n for n in VALIDATION_NAMES if (root / n / "0").is_dir()), None)
    dirs = {"train": root / "train", "validate": val, "test": root / "test"}
    if all(d is not None and (d / "0").is_dir() and (d / "1").is_dir() for d in dirs.values()):
        return {k: v for k, v in dirs.items() if v is not None}
    return None


def _image_files(folder: Path) -> list[Path]:
    """Image files below a folder, sorted (hidden files and other suffixes skipped)."""
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files)


def read_manifest(root: Path) -> dict[str, str]:
    """{relative posix path: source} from root/manifest.csv; empty when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise DatasetError(f"{path} has no 'path' column")
        return {
            row["path"].strip().replace("\\", "/"): (row.get("source") or "").strip()
            or UNKNOWN_SOURCE
            for row in reader
        }


def read_attributes(root: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """{relative posix path: ((column, value), ...)} of the manifest's attribute columns (those
    not in FILE_COLUMNS), empty values left out; empty without a manifest."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c for c in reader.fieldnames or () if c and c.strip() not in FILE_COLUMNS]
        if not columns:
            return {}
        return {
            row["path"].strip().replace("\\", "/"): tuple(
                (c.strip(), row[c].strip()) for c in columns if (row.get(c) or "").strip()
            )
            for row in reader
        }


def _with_attributes(
    root: Path, parts: dict[str, tuple[Sample, ...]]
) -> dict[str, tuple[Sample, ...]]:
    """The samples with their manifest attributes attached."""
    found = read_attributes(root)
    if not found:
        return parts
    return {
        split: tuple(replace(s, attributes=found.get(_rel(s.path, root), ())) for s in samples)
        for split, samples in parts.items()
    }


def _load_kaggle(root: Path) -> DatasetSplits:
    dirs = _kaggle_split_dirs(root)
    assert dirs is not None
    sources = read_manifest(root)
    parts: dict[str, tuple[Sample, ...]] = {}
    for split, folder in dirs.items():
        parts[split] = tuple(
            Sample(path, label, split, sources.get(_rel(path, root), UNKNOWN_SOURCE))
            for label in (0, 1)
            for path in _image_files(folder / str(label))
        )
    _require_images(root, parts)
    parts = _with_attributes(root, parts)
    logger.info("read Kaggle layout at %s", root)
    return DatasetSplits(root, "kaggle", parts["train"], parts["validate"], parts["test"])


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _require_images(root: Path, parts: dict[str, tuple[Sample, ...]]) -> None:
    for split in ("train", "validate"):
        labels = {s.label for s in parts[split]}
        if labels != {0, 1}:
            raise DatasetError(f"{root}: the {split} split needs images of both classes")


def _load_plain(root: Path, real_dir: str, ai_dir: str, seed: int) -> DatasetSplits:
    sources = read_manifest(root)
    unsplit = [
        (path, label, _plain_source(path, root / folder, sources.get(_rel(path, root))))
        for label, folder in enumerate((real_dir, ai_dir))
        for path in _image_files(root / folder)
    ]
    parts = _with_attributes(root, stratified_split(unsplit, seed))
    _require_images(root, parts)
    logger.info("read plain layout at %s, split with seed %d", root, seed)
    return DatasetSplits(root, "plain", parts["train"], parts["validate"], parts["test"])


def _plain_source(path: Path, class_dir: Path, manifest_source: str | None) -> str:
    if manifest_source:
        return manifest_source
    rel = path.relative_to(class_dir).parts
    return rel[0] if len(rel) > 1 else UNKNOWN_SOURCE


def stratified_split(
    items: Iterable[tuple[Path, int, str]], seed: int
) -> dict[str, tuple[Sample, ...]]:
    """Deterministic 60/20/20 split within every (class, source) group.

    Order inside a group comes from a keyed hash of the file name, not from a global RNG: adding
    files to one group never moves files of another group between splits.
    """
    groups: dict[tuple[int, str], list[Path]] = {}
    for path, label, source in items:
        groups.setdefault((label, source), []).append(path)
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for (label, source), paths in sorted(groups.items()):
        ordered = sorted(paths, key=lambda p: _hash_key(seed, p))
        n_train, n_val = _split_sizes(len(ordered))
        for i, path in enumerate(ordered):
            split = "train" if i < n_train else "validate" if i < n_train + n_val else "test"
            parts[split].append(Sample(path, label, split, source))
    return {name: tuple(sorted(parts[name], key=lambda s: s.path)) for name in SPLITS}


def _hash_key(seed: int, path: Path) -> str:
    # Keyed on the file name only, so moving the dataset folder keeps the same split.
    return hashlib.sha256(f"{seed}:{path.name}".encode()).hexdigest()


def _split_sizes(n: int) -> tuple[int, int]:
    """(train, validate) counts for a group of n; tiny groups still reach train first."""
    n_val = round(n * SPLIT_FRACTIONS[1])
    n_test = round(n * (1.0 - SPLIT_FRACTIONS[0] - SPLIT_FRACTIONS[1]))
    n_train = max(n - n_val - n_test, min(n, 1))
    n_val = min(n_val, n - n_train)
    return n_train, n_val


def download_kaggle(handle: str) -> Path:
    """Download (or reuse kagglehub's cache of) a Kaggle dataset; returns its local folder.

    Credentials: KAGGLE_USERNAME + KAGGLE_KEY in the environment, or ~/.kaggle/kaggle.json.
    """
    import kagglehub

    logger.info("downloading Kaggle dataset %s through kagglehub", handle)
    try:
        path = kagglehub.dataset_download(handle)
    except Exception as exc:  # kagglehub raises many types (HTTP, auth, unzip)
        raise DatasetError(
            f"could not download Kaggle dataset {handle!r}: {exc}. Set KAGGLE_USERNAME and "
            "KAGGLE_KEY (or put kaggle.json in ~/.kaggle/) and check the network."
        ) from exc
    return Path(path)


def fingerprint(samples: Sequence[Sample], workers: int = 2) -> str:
    """SHA-256 over (split, label, content hash) of every sample: same data, same fingerprint."""

    def entry(s: Sample) -> str:
        return f"{s.split}\t{s.label}\t{_file_sha256(s.path)}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        lines = sorted(pool.map(entry, samples))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_key(samples: Sequence[Sample], image_size: int, decoder: str) -> str:
    """Cheap identity of a decoded-pixels cache: paths, sizes, mtimes, image size, decoder."""
    digest = hashlib.sha256(f"{image_size}\t{decoder}".encode())
    for s in samples:
        st = os.stat(s.path)
        digest.update(f"\n{s.path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def dataset_info(splits: DatasetSplits) -> dict[str, Any]:
    """What a model was trained on, for model.json."""
    return {
        "root": str(splits.root),
        "roots": [str(r) for r in splits.roots or (splits.root,)],
        "layout": splits.layout,
        "distribution": splits.distribution(),
        "unseen_sources": unseen_sources(splits),
    }


def unseen_sources(splits: DatasetSplits) -> list[str]:
    """Sources in the test split that training never saw (held out, or only ever in test)."""
    seen = {s.source for s in splits.train + splits.validate}
    return sorted({s.source for s in splits.test} - seen)
