"""The EDA's computed facts kept on disk by data fingerprint, so a scheduled regeneration on the
same data does not read and measure every file again (minutes on the full datasets).

One compressed .npz per (data fingerprint, sample size, seed); no pickles, so a tampered cache
file can at worst be refused. A file whose paths differ from the data's is a miss.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from reports.eda import EdaFacts, Measured
from reports.imagefacts import FEATURES, FileFacts, LabelledImage
from reports.page import write_atomic

logger = logging.getLogger(__name__)

CACHE_VERSION: Final[int] = 1
GREY_SIDE: Final[int] = 32


def cache_path(cache_dir: Path, fingerprint: str, sample_size: int, seed: int) -> Path:
    """Where the facts of this data and sampling are kept."""
    return cache_dir / f"eda-v{CACHE_VERSION}-{fingerprint[:32]}-{sample_size}-{seed}.npz"


def save(facts: EdaFacts, path: Path, *, private: bool = True) -> Path:
    """Write the facts atomically (0600 when private)."""
    fs = facts.facts
    index = {id(f): i for i, f in enumerate(fs)}
    grey = np.zeros((len(fs), GREY_SIDE, GREY_SIDE), dtype=np.uint8)
    for i, f in enumerate(fs):
        if f.grey is not None:
            grey[i] = np.clip(np.rint(f.grey), 0, 255).astype(np.uint8)
    m = facts.measured
    names = list(FEATURES)
    vectors = np.stack(m.vectors) if m.vectors else np.zeros((0, 0), dtype=np.float32)
    arrays = {
        "version": np.array([CACHE_VERSION]),
        "paths": np.array([str(f.path) for f in fs], dtype=str),
        "labels": np.array([f.label for f in fs], dtype=np.int64),
        "splits": np.array([f.split for f in fs], dtype=str),
        "sources": np.array([f.source for f in fs], dtype=str),
        "sizes": np.array([f.size_bytes for f in fs], dtype=np.int64),
        "widths": np.array([f.width for f in fs], dtype=np.int64),
        "heights": np.array([f.height for f in fs], dtype=np.int64),
        "formats": np.array([f.format for f in fs], dtype=str),
        "sha256": np.array([f.sha256 for f in fs], dtype=str),
        "phash": np.array([f.phash for f in fs], dtype=np.uint64),
        "has_grey": np.array([f.grey is not None for f in fs], dtype=bool),
        "grey": grey,
        "errors": np.array([f.error for f in fs], dtype=str),
        "measured": np.array([index[id(f)] for f in m.facts], dtype=np.int64),
        "feature_names": np.array(names, dtype=str),
        "features": np.array([[x[n] for n in names] for x in m.features], dtype=np.float64),
        # PCA vectors are pixels / 255 of a uint8 decode: exact as uint8, a quarter the size.
        "vectors": np.clip(np.rint(vectors * 255.0), 0, 255).astype(np.uint8),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    write_atomic(path, buf.getvalue(), private=private)
    logger.info("cached the EDA facts in %s", path)
    return path


def load(path: Path, samples: Sequence[LabelledImage]) -> EdaFacts | None:
    """The cached facts when they describe exactly these files; None on any mismatch."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring the unreadable EDA cache %s: %s", path, exc)
        return None
    try:
        return _facts(data, samples)
    except (KeyError, ValueError, IndexError) as exc:
        logger.warning("ignoring the EDA cache %s: %s", path, exc)
        return None


def _facts(data: dict[str, np.ndarray], samples: Sequence[LabelledImage]) -> EdaFacts | None:
    if int(data["version"][0]) != CACHE_VERSION:
        return None
    paths = [str(p) for p in data["paths"].tolist()]
    if paths != [str(s.path) for s in samples]:
        return None
    names = [str(n) for n in data["feature_names"].tolist()]
    if names != list(FEATURES):
        return None
    facts = [
        FileFacts(
            path=s.path,
            label=int(data["labels"][i]),
            split=str(data["splits"][i]),
            source=str(data["sources"][i]),
            size_bytes=int(data["sizes"][i]),
            width=int(data["widths"][i]),
            height=int(data["heights"][i]),
            format=str(data["formats"][i]),
            sha256=str(data["sha256"][i]),
            phash=int(data["phash"][i]),
            grey=data["grey"][i].astype(np.float32) if data["has_grey"][i] else None,
            error=str(data["errors"][i]),
        )
        for i, s in enumerate(samples)
    ]
    measured = Measured()
    for row, i in enumerate(data["measured"].tolist()):
        measured.facts.append(facts[i])
        measured.features.append(
            {n: float(v) for n, v in zip(names, data["features"][row], strict=True)}
        )
        measured.vectors.append(data["vectors"][row].astype(np.float32) / 255.0)
    return EdaFacts(facts, measured)
