"""Data for report tests: a tiny Kaggle-layout dataset, real service rows in a database, and
Settings built through the real config parser."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from storage import queries as q
from storage.db import Database
from storage.models import FileRow, utcnow
from watcher.cli import main
from watcher.settings import Settings, load_settings, parse_settings

XSS_NAME = "<script>alert(1)</script>.jpg"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;.jpg"
# (class index, source, mean brightness range): the tiny model calls dark "real", bright "ai".
SOURCES = (
    (0, "cam_a", (25, 80)),
    (0, "cam_b", (40, 95)),
    (1, "gen_x", (165, 230)),
    (1, "gen_y", (170, 235)),
)
PER_SPLIT = {"train": 4, "validate": 2, "test": 3}  # images per source


@dataclass(frozen=True)
class TinyDataset:
    """Where the dataset is and which special files it holds."""

    root: Path
    duplicate: Path  # byte copy of a train image placed in test (cross-split leak)
    near_duplicate: Path  # a train image re-encoded at another quality, in validate
    mistakes: tuple[Path, ...]  # test images the brightness model gets wrong


def _face(path: Path, mean: float, seed: int, quality: int = 90) -> Path:
    """A 48x48 JPEG: brightness `mean`, a soft blob and some noise (so features vary)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48]
    blob = 40.0 * np.exp(-((xx - 24 - rng.integers(-6, 7)) ** 2 + (yy - 22) ** 2) / 120.0)
    img = mean + blob[..., None] + rng.normal(0, 4 + seed % 9, (48, 48, 3))
    img += rng.uniform(-15, 15, (1, 1, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return path


def write_dataset(root: Path) -> TinyDataset:
    """Kaggle layout {train,validate,test}/{0,1}/ with manifest.csv naming each source."""
    rows: list[dict[str, Any]] = []
    seed = 0
    for split, n in PER_SPLIT.items():
        for label, source, (lo, hi) in SOURCES:
            for i in range(n):
                seed += 1
                rel = f"{split}/{label}/{source}_{i:03d}.jpg"
                _face(root / rel, lo + (hi - lo) * i / max(n - 1, 1), seed)
                rows.append(_row(rel, split, label, source))
    # Specials: a dark "ai" and a bright "real" image in test (confident mistakes), a file
    # name that is an HTML injection attempt, an exact and a near duplicate.
    mistakes = (
        _face(root / "test/1/gen_x_dark.jpg", 40, 901),
        _face(root / "test/0/cam_a_bright.jpg", 215, 902),
    )
    rows += [
        _row("test/1/gen_x_dark.jpg", "test", 1, "gen_x"),
        _row("test/0/cam_a_bright.jpg", "test", 0, "cam_a"),
    ]
    _face(root / "train/0" / XSS_NAME, 50, 903)
    rows.append(_row(f"train/0/{XSS_NAME}", "train", 0, "cam_a"))
    duplicate = root / "test/0/cam_a_copy.jpg"
    shutil.copyfile(root / "train/0/cam_a_001.jpg", duplicate)
    rows.append(_row("test/0/cam_a_copy.jpg", "test", 0, "cam_a"))
    near = root / "validate/1/gen_x_reencoded.jpg"
    Image.open(root / "train/1/gen_x_002.jpg").save(near, "JPEG", quality=60)
    rows.append(_row("validate/1/gen_x_reencoded.jpg", "validate", 1, "gen_x"))
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return TinyDataset(root, duplicate, near, mistakes)


def _row(rel: str, split: str, label: int, source: str) -> dict[str, Any]:
    cls = ("real", "ai")[label]
    # Attributes of the people on the real pictures (fairness section): an age, and a column
    # no code knows in advance.
    number = sum(map(ord, rel))
    return {
        "path": rel,
        "split": split,
        "label": label,
        "class": cls,
        "source": source,
        "generator": source if label else "real",
        "age": "" if label else str(8 + number % 70),
        "lighting": "" if label else ("studio", "outdoor")[number % 2],
    }


def make_settings(tmp_path: Path, **tables: dict[str, Any]) -> Settings:
    """Settings through the real parser: a private SQLite file and reports dir in tmp_path."""
    raw: dict[str, Any] = {
        "storage": {"url": "sqlite:///var/test.db", "busy_timeout_ms": 2000},
        "reports": {"dir": "var/reports"},
        "detector": {"model_store": "var/models"},
    }
    for name, values in tables.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_settings(raw, base_dir=tmp_path, source=None)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _model(s: Session, version: str) -> int:
    row = q.register_model_version(
        s,
        version=version,
        arch="tiny",
        path=f"/models/{version}",
        input_size=32,
        threshold=0.5,
        data_fingerprint="fp",
        metrics={},
        training={},
    )
    return row.id


def seed_service(db: Database, *, days_back: int = 3) -> dict[str, str]:
    """Real service history: two model versions, verdicts over days, rejections, labels,
    training runs and an evaluation with per-image scores. Returns named sha256 values."""
    shas: dict[str, str] = {}
    with db.session() as s:
        old, new = _model(s, "tiny-old"), _model(s, "tiny-new")
        q.promote(s, "tiny-old", {"promote": True, "reasons": ["first model"]})
        q.record_activation(s, "tiny-old", "host-a", 101)
        q.promote(s, "tiny-new", {"promote": True, "reasons": ["accuracy 0.99 vs 0.90"]})
        q.record_activation(s, "tiny-new", "host-a", 102)
        now = utcnow()
        for i in range(24):
            model = old if i < 8 else new
            label = "ai" if i % 3 == 0 else "real"
            name = XSS_NAME if i == 5 else f"photo_{i:02d}.jpg"
            shas[name] = _classified(
                s,
                f"/inbox/{name}",
                model,
                label,
                0.9 if label == "ai" else 0.1 + i / 100,
                now - timedelta(hours=i * days_back),
            )
        for i, code in enumerate(("truncated", "not_an_image", "truncated")):
            row, _ = q.discover_file(
                s, path=f"/inbox/bad_{i}.jpg", size_bytes=9, mtime_ns=i, origin="inbox"
            )
            q.mark_rejected(s, row.id, code=code, reason=f"the file is {code}: <b>{i}</b>")
        q.set_label(s, shas["photo_03.jpg"], "ai", "agrees")  # model said ai
        q.set_label(s, shas["photo_04.jpg"], "ai", "model was wrong")  # model said real
        ok = q.start_training_run(s, {"epochs": 1})
        q.finish_training_run(
            s,
            ok,
            status="succeeded",
            candidate_version="tiny-new",
            decision={"promote": True, "reasons": ["better"]},
        )
        bad = q.start_training_run(s, {"epochs": 1})
        q.finish_training_run(s, bad, status="failed", error="DatasetError: data folder gone")
        q.add_evaluation(
            s,
            version="tiny-new",
            dataset="faces:test",
            data_fingerprint="fp",
            metrics={
                "accuracy": 0.9,
                "per_image": {"scores": [0.05, 0.1, 0.2, 0.8, 0.9, 0.95, 0.15, 0.85]},
            },
        )
    return shas


def _classified(s: Session, path: str, model_id: int, label: str, score: float, when: Any) -> str:
    sha = _sha(path)
    row, _ = q.discover_file(s, path=path, size_bytes=100, mtime_ns=1, origin="inbox")
    image = q.upsert_image(s, sha, 100, 48, 48, "JPEG")
    pred = q.add_prediction(
        s,
        image_id=image.id,
        model_version_id=model_id,
        score=score,
        label=label,
        decode_ms=2.0,
        infer_ms=1.5,
    )
    q.mark_classified(s, row.id, sha256=sha, prediction_id=pred.id, disposition="kept")
    # Spread the history over days, with a few seconds from drop to verdict.
    file_row = s.get(FileRow, row.id)
    assert file_row is not None
    file_row.screened_at = when
    file_row.discovered_at = when - timedelta(seconds=1 + len(path) % 5)
    file_row.claimed_by = "host-a:serve" if sha < "8" else "host-b:serve"  # two daemons
    return sha


@dataclass(frozen=True)
class GeneratedSite:
    """The outcome of one `report all` run through the CLI."""

    config: Path
    out_dir: Path
    exit_code: int
    stdout: str


def write_config(path: Path, tiny_bundle: Path, data: Path | None) -> Path:
    """A config.toml like a user's: relative paths resolve against its folder."""
    data_line = f'data = "{data}"' if data is not None else 'data = ""'
    path.write_text(
        f'[storage]\nurl = "sqlite:///var/test.db"\n\n'
        f'[detector]\nmodel = "{tiny_bundle}"\nbackend = "keras"\n\n'
        f'[reports]\ndir = "out/reports"\n{data_line}\neda_sample = 12\n',
        encoding="utf-8",
    )
    return path


def seed_review_pictures(db: Database, folder: Path) -> list[Path]:
    """Three real pictures screened just now (two ai, one real), each with a face box where
    the schema has a `faces` table."""
    paths = []
    with db.session() as s:
        model = _model(s, "tiny-review")
        for i, (label, mean) in enumerate((("ai", 200), ("real", 60), ("ai", 180))):
            path = _face(folder / "inbox" / f"screened_{i}.jpg", mean, 950 + i)
            sha = _classified(s, str(path), model, label, 0.9 if label == "ai" else 0.1, utcnow())
            paths.append(path)
            if inspect(s.connection()).has_table("faces"):
                pred = q.predictions_for(s, [sha], model)[sha]
                s.execute(
                    text(
                        "INSERT INTO faces (prediction_id, face_index, x, y, w, h, "
                        "detector_score, score) VALUES (:p, 0, 8, 6, 30, 34, 0.95, :sc)"
                    ),
                    {"p": pred.id, "sc": 0.88 if label == "ai" else 0.12},
                )
    return paths


def generate_site(folder: Path, tiny_bundle: Path, data: Path | None) -> GeneratedSite:
    """Seed a database with service history, then run `report all` via watcher.cli.main."""
    config = write_config(folder / "config.toml", tiny_bundle, data)
    db = Database.open(load_settings(config).storage)
    try:
        seed_service(db)
        seed_review_pictures(db, folder)
    finally:
        db.close()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--config", str(config), "report", "all"])
    return GeneratedSite(config, folder / "out" / "reports", code, out.getvalue())
