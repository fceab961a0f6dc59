"""Row factories for storage tests (a module of its own so test files can import the type)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

from storage import queries as q
from storage.db import Database


@dataclass
class Seed:
    """Creates rows through the public query functions, with unique names per call."""

    db: Database
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def model(
        self, version: str = "", status: str = "candidate", path: str = "", **metrics: float
    ) -> int:
        """Register a model version (bundle folder `path`); returns its id."""
        version = version or f"m{next(self.counter)}"
        with self.db.session() as s:
            row = q.register_model_version(
                s,
                version=version,
                arch="tiny",
                path=path or f"/models/{version}",
                input_size=32,
                threshold=0.5,
                data_fingerprint="fp",
                metrics=dict(metrics),
                training={"epochs": 1},
                status=status,
            )
            return row.id

    def pending(self, path: str = "", origin: str = "inbox") -> int:
        """A newly discovered file; returns its id."""
        path = path or f"/inbox/img{next(self.counter)}.jpg"
        with self.db.session() as s:
            row, _ = q.discover_file(s, path=path, size_bytes=100, mtime_ns=1, origin=origin)
            return row.id

    def classified(
        self, model_id: int, *, score: float = 0.9, label: str = "ai", path: str = ""
    ) -> tuple[int, str]:
        """A file classified by model_id; returns (file id, sha256)."""
        file_id = self.pending(path)
        sha = hashlib.sha256(f"content-{file_id}".encode()).hexdigest()
        with self.db.session() as s:
            image = q.upsert_image(s, sha, 100, 64, 64, "JPEG")
            pred = q.add_prediction(
                s,
                image_id=image.id,
                model_version_id=model_id,
                score=score,
                label=label,
                decode_ms=1.5,
                infer_ms=2.5,
            )
            q.mark_classified(s, file_id, sha256=sha, prediction_id=pred.id)
        return file_id, sha

    def rejected(self, code: str = "truncated", path: str = "") -> int:
        """A rejected file; returns its id."""
        file_id = self.pending(path)
        with self.db.session() as s:
            q.mark_rejected(s, file_id, code=code, reason=f"the file is {code}")
        return file_id
