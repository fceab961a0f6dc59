"""Verdict files: NAME.verdict.json beside each sorted file ([watcher] sidecar = true).

Written atomically (a hidden temp file in the same folder, fsync, then os.replace), so a reader
never sees half a file; they are written after the move is recorded, from what the database
holds, so a verdict file always says what the `verdicts` view says.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

from detector.atomic import write_atomic
from storage.models import FileState
from storage.queries import ImageEvidence, VerdictRow
from watcher.disposition import fit_name

logger = logging.getLogger(__name__)

SUFFIX: Final[str] = ".verdict.json"
FORMAT_VERSION: Final[int] = 1
_FACE_FIELDS: Final[tuple[str, ...]] = ("face_x", "face_y", "face_w", "face_h", "face_score")


def sidecar_path(dest: Path) -> Path:
    """Where the verdict file of `dest` goes: its name + '.verdict.json' (shortened to fit)."""
    return dest.with_name(fit_name(dest.name, SUFFIX) + SUFFIX)


def payload(row: VerdictRow, evidence: ImageEvidence | None) -> dict[str, Any]:
    """The verdict file's content: label, score, faces, evidence, model version, time."""
    data = row.to_dict()
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "file": Path(row.dest_path or row.path).name,
        "inbox_path": row.path,
        "sha256": row.sha256,
        "status": row.status,
        "label": row.label,
        "score": row.score,
        "decided_by": data.get("decided_by"),
        "model_version": row.model_version,
        "screened_at": data["created_at"],
        "faces": _faces(data),
        "evidence": {
            "summary": data.get("evidence"),
            "findings": [] if evidence is None else [i.to_dict() for i in evidence.items],
        },
    }
    if row.status == FileState.REJECTED:
        out.update(reason_code=row.reason_code, reason=row.reason)
    return out


def _faces(data: dict[str, Any]) -> dict[str, Any] | None:
    """The face count and the best face's box and score (None: no faces were looked for)."""
    if data.get("faces") is None:
        return None
    best = None
    if data.get("face_x") is not None:
        x, y, w, h, score = (data[name] for name in _FACE_FIELDS)
        best = {"box": [x, y, w, h], "score": score}
    return {"count": data["faces"], "best": best, "whole_score": data.get("whole_score")}


def write_sidecar(dest: Path, content: dict[str, Any]) -> Path:
    """Write `content` as the verdict file of `dest` atomically; returns its path."""
    text = json.dumps(content, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_atomic(sidecar_path(dest), text, mode=0o644)
