"""What a model bundle recorded about itself when it was trained: its test evaluation and the
folders of its training data.

The reports fall back on these when no `[reports] data` is configured, so a first run shows the
serving model's figures and data instead of empty pages. Every piece is optional: a model.json
from an older training run lacks some, and the pages say which.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.bundle import ModelMeta
from training.datasets import DatasetError, DatasetSplits, load_layout

logger = logging.getLogger(__name__)

# Pieces of a recorded evaluation the page draws, and what each one is called when missing.
RECORDED_PIECES: dict[str, str] = {
    "confusion_matrix": "confusion matrix",
    "classification_report": "classification report",
    "curves": "ROC and precision-recall curve points",
    "threshold_sweep": "threshold sweep",
    "per_source": "per-source metrics",
}


@dataclass(frozen=True, slots=True)
class RecordedEvaluation:
    """The test-split metrics a model.json carries, with where and when they were measured."""

    metrics: dict[str, Any]
    split: str  # "test", or "validate" for a model trained without a test split
    dataset: str  # the training data folder(s) as recorded
    data_fingerprint: str
    created_at: str

    def missing(self) -> list[str]:
        """Names of the pieces the page would draw but the record lacks."""
        missing = [name for key, name in RECORDED_PIECES.items() if not self.metrics.get(key)]
        curves = self.metrics.get("curves")
        if isinstance(curves, Mapping) and not curves.get("reliability"):
            missing.append("reliability bins")
        return missing

    def sentence(self) -> str:
        """The plain statement the page opens with."""
        fp = self.data_fingerprint[:12] or "not recorded"
        return (
            f"No evaluation data is configured ([reports] data), so these are the figures "
            f"recorded when the model was trained ({self.created_at or 'time not recorded'}), "
            f"on the {self.split} split of {self.dataset or 'its training data'} "
            f"(training data fingerprint {fp})."
        )


def recorded_evaluation(meta: ModelMeta) -> RecordedEvaluation | None:
    """The model's recorded test evaluation (validation when it has no test), if any."""
    for split in ("test", "validate"):
        metrics = meta.metrics.get(split)
        if isinstance(metrics, Mapping) and metrics:
            return RecordedEvaluation(
                metrics=dict(metrics),
                split=split,
                dataset=", ".join(recorded_roots(meta)),
                data_fingerprint=meta.data_fingerprint,
                created_at=meta.created_at,
            )
    return None


def recorded_roots(meta: ModelMeta) -> list[str]:
    """The training data folders as recorded: `training.data` or `training.dataset.root`,
    each a path or a list of paths (newer models train on several folders)."""
    training = meta.training
    dataset = training.get("dataset")
    candidates: list[Any] = [training.get("data")]
    if isinstance(dataset, Mapping):
        candidates += [dataset.get("roots"), dataset.get("root")]
    for value in candidates:
        roots = _as_paths(value)
        if roots:
            return roots
    return []


def _as_paths(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | os.PathLike) and str(v).strip()]
    return []


def resolve_roots(roots: Sequence[str], bases: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Recorded folders found on disk (relative ones tried against each base), and the missing."""
    found: list[Path] = []
    missing: list[str] = []
    for root in roots:
        path = Path(root).expanduser()
        tries = [path] if path.is_absolute() else [base / path for base in bases]
        hit = next((p.resolve() for p in tries if p.is_dir()), None)
        if hit is None:
            missing.append(root)
        else:
            found.append(hit)
    return found, missing


def load_roots(
    roots: Sequence[Path], *, real_dir: str = "real", ai_dir: str = "ai", seed: int = 1337
) -> DatasetSplits:
    """One or several data folders as one set of splits (raises DatasetError)."""
    if not roots:
        raise DatasetError("no data folder given")
    parts = [load_layout(r, real_dir=real_dir, ai_dir=ai_dir, seed=seed) for r in roots]
    if len(parts) == 1:
        return parts[0]
    common = Path(os.path.commonpath([str(p.root) for p in parts]))
    return DatasetSplits(
        root=common,
        layout="+".join(sorted({p.layout for p in parts})),
        train=tuple(s for p in parts for s in p.train),
        validate=tuple(s for p in parts for s in p.validate),
        test=tuple(s for p in parts for s in p.test),
    )


def how_to_point_at_data(missing: Sequence[str] = ()) -> str:
    """One sentence telling the user how to give the EDA report its data."""
    where = f" (its recorded training data {', '.join(missing)} is not on disk)" if missing else ""
    return (
        f"No training data to describe{where}: set [reports] data in config.toml to a labelled "
        "folder (Kaggle layout or real/ and ai/), or run `deepfake-detector report eda --data DIR`."
    )


def recorded_training_data(
    meta: ModelMeta, bases: Sequence[Path], *, real_dir: str, ai_dir: str, seed: int
) -> tuple[DatasetSplits | None, str, list[str]]:
    """The model's recorded training data when all of it is on disk: (splits, "", notes);
    else (None, the one sentence saying how to point the report at data, [])."""
    roots = recorded_roots(meta)
    found, missing = resolve_roots(roots, bases)
    if not found or missing:
        return None, how_to_point_at_data(missing), []
    try:
        splits = load_roots(found, real_dir=real_dir, ai_dir=ai_dir, seed=seed)
    except DatasetError as exc:
        logger.warning("recorded training data unusable: %s", exc)
        return None, how_to_point_at_data([f"{', '.join(roots)} ({exc})"]), []
    where = ", ".join(str(p) for p in found)
    note = (
        f"No [reports] data is configured: this describes the serving model's recorded "
        f"training data ({meta.version}), found at {where}."
    )
    return splits, "", [note]
