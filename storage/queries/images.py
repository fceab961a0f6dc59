"""Images and predictions, one at a time and many at once (the writer's store_classified)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import (
    LABEL_VALUES,
    VERDICT_LABELS,
    Disposition,
    FileRow,
    FileState,
    Image,
    Prediction,
    utcnow,
)
from storage.queries._common import _choice, _chunks, _get_or_create, _insert_skipping_existing
from storage.queries.evidence import ImageEvidence, store_evidence
from storage.queries.faces import FaceRecord, insert_faces


def upsert_image(
    s: Session,
    sha256: str,
    size_bytes: int,
    width: int | None = None,
    height: int | None = None,
    fmt: str | None = None,
) -> Image:
    """The image with this content hash, created if new; fills in details it lacked."""
    image, created = _get_or_create(
        s,
        Image,
        {"sha256": sha256},
        {"size_bytes": size_bytes, "width": width, "height": height, "format": fmt},
    )
    if not created:
        # An earlier sighting may have been rejected before the header was read.
        image.width = image.width if width is None else width
        image.height = image.height if height is None else height
        image.format = image.format if fmt is None else fmt
    return image


def add_prediction(
    s: Session,
    *,
    image_id: int,
    model_version_id: int,
    score: float,
    label: str,
    decode_ms: float | None,
    infer_ms: float | None,
) -> Prediction:
    """Store one model's score for one image; an existing one for the pair is returned as is."""
    prediction, _ = _get_or_create(
        s,
        Prediction,
        {"image_id": image_id, "model_version_id": model_version_id},
        {
            "score": float(score),
            "label": _choice("label", label, LABEL_VALUES),
            "decode_ms": decode_ms,
            "infer_ms": infer_ms,
        },
    )
    return prediction


def predictions_for(
    s: Session, sha256s: Collection[str], model_version_id: int
) -> dict[str, Prediction]:
    """Existing predictions of one model version, by image hash (to skip re-scoring)."""
    found: dict[str, Prediction] = {}
    for chunk in _chunks(list(dict.fromkeys(sha256s))):
        stmt = (
            select(Image.sha256, Prediction)
            .join(Prediction, Prediction.image_id == Image.id)
            .where(Image.sha256.in_(chunk), Prediction.model_version_id == model_version_id)
        )
        for sha256, prediction in s.execute(stmt):
            found[sha256] = prediction
    return found


# --- many files at once (the daemon's writer thread) ---------------------------------------
# The same effects as the single-row functions above, in a few set-based statements per batch:
# per-row ORM loads, flushes and savepoints cost the writer ~4 CPU-ms per file (0.6-0.7 ms
# set-based), spent holding the GIL while the model waits.


@dataclass(frozen=True, slots=True)
class ClassifiedFile:
    """A claimed file's model verdict, to store with others by store_classified()."""

    file_id: int
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    format: str | None
    model_version_id: int
    score: float
    label: str
    decode_ms: float | None
    infer_ms: float | None
    # None leaves the row's disposition as it is.
    disposition: str | None
    # `label` is the model's own call; the verdict (None: that label) and what decided it.
    verdict: str | None = None
    decided_by: str | None = None
    # The provenance findings of the bytes (None: not read).
    evidence: ImageEvidence | None = None
    # The whole-picture view's score and the faces scored (None: no face view was used).
    whole_score: float | None = None
    faces: tuple[FaceRecord, ...] | None = None


def store_classified(s: Session, items: Sequence[ClassifiedFile]) -> datetime:
    """upsert_image + add_prediction + mark_classified for many files, set-based.

    Same content in several files shares one image and one prediction (the first item's score);
    returns the screened_at time written to the files.
    """
    now = utcnow()
    if not items:
        return now
    image_ids = _upsert_images(s, items, now)
    store_evidence(s, {image_ids[i.sha256]: i.evidence for i in items if i.evidence is not None})
    prediction_ids = _insert_predictions(s, items, image_ids, now)
    updates: list[dict[str, Any]] = []
    for item in sorted(items, key=lambda i: i.file_id):
        values = {
            "id": item.file_id,
            "state": FileState.CLASSIFIED.value,
            "sha256": item.sha256,
            "prediction_id": prediction_ids[(image_ids[item.sha256], item.model_version_id)],
            "reason_code": None,
            "reason": None,
            "screened_at": now,
            "updated_at": now,
        }
        if item.disposition is not None:
            values["disposition"] = _choice("disposition", item.disposition, Disposition)
        updates.append(values)
    # ORM bulk UPDATE by primary key: one executemany; a missing file id raises StaleDataError.
    s.execute(update(FileRow), updates)
    return now


_IMAGE_DETAILS = ("width", "height", "format")


def _upsert_images(s: Session, items: Sequence[ClassifiedFile], now: datetime) -> dict[str, int]:
    """Image ids by sha256; new images inserted, known ones given details they lacked."""
    wanted = _wanted_images(items, now)
    stmt = _insert_skipping_existing(s, Image, ("sha256",))
    s.execute(stmt, [wanted[sha] for sha in sorted(wanted)])
    ids: dict[str, int] = {}
    stale: list[dict[str, Any]] = []
    columns = (Image.id, Image.sha256, Image.width, Image.height, Image.format)
    for chunk in _chunks(sorted(wanted)):
        for image_id, sha256, *known in s.execute(select(*columns).where(Image.sha256.in_(chunk))):
            ids[sha256] = image_id
            want = wanted[sha256]
            merged = {
                name: old if want[name] is None else want[name]
                for name, old in zip(_IMAGE_DETAILS, known, strict=True)
            }
            # An earlier sighting may have been stored before its header was read.
            if list(merged.values()) != known:
                stale.append({"id": image_id, **merged})
    if stale:
        s.execute(update(Image), stale)
    return ids


def _wanted_images(items: Sequence[ClassifiedFile], now: datetime) -> dict[str, dict[str, Any]]:
    """Insert values per sha256: as upsert_image() in turn, later known details win."""
    wanted: dict[str, dict[str, Any]] = {}
    for item in items:
        row = wanted.setdefault(
            item.sha256,
            {"sha256": item.sha256, "size_bytes": item.size_bytes, "first_seen_at": now}
            | dict.fromkeys(_IMAGE_DETAILS),
        )
        details = zip(_IMAGE_DETAILS, (item.width, item.height, item.format), strict=True)
        row.update((name, value) for name, value in details if value is not None)
    return wanted


def _insert_predictions(
    s: Session, items: Sequence[ClassifiedFile], image_ids: Mapping[str, int], now: datetime
) -> dict[tuple[int, int], int]:
    """Prediction ids by (image id, model version id); an existing prediction is kept as is."""
    wanted: dict[tuple[int, int], dict[str, Any]] = {}
    for item in items:
        key = (image_ids[item.sha256], item.model_version_id)
        label = _choice("label", item.label, LABEL_VALUES)
        wanted.setdefault(
            key,
            {
                "image_id": key[0],
                "model_version_id": key[1],
                "score": float(item.score),
                "label": label,
                "decode_ms": item.decode_ms,
                "infer_ms": item.infer_ms,
                "created_at": now,
                "verdict": None
                if item.verdict is None
                else _choice("verdict", item.verdict, VERDICT_LABELS),
                "decided_by": item.decided_by,
                "faces": None if item.faces is None else len(item.faces),
                "whole_score": item.whole_score,
            },
        )
    # A prediction already stored keeps its faces too: only new predictions get face rows.
    existing = set(_prediction_ids(s, wanted).values()) if any(i.faces for i in items) else set()
    stmt = _insert_skipping_existing(s, Prediction, ("image_id", "model_version_id"))
    s.execute(stmt, [wanted[key] for key in sorted(wanted)])
    ids = _prediction_ids(s, wanted)
    faces: dict[int, tuple[FaceRecord, ...]] = {}
    for item in items:
        prediction_id = ids[(image_ids[item.sha256], item.model_version_id)]
        if item.faces and prediction_id not in existing:
            faces.setdefault(prediction_id, item.faces)
    insert_faces(s, faces)
    return ids


def _prediction_ids(
    s: Session, wanted: Mapping[tuple[int, int], Any]
) -> dict[tuple[int, int], int]:
    ids: dict[tuple[int, int], int] = {}
    for version_id in sorted({version for _, version in wanted}):
        image_list = sorted(image for image, version in wanted if version == version_id)
        for chunk in _chunks(image_list):
            stmt_ids = select(Prediction.id, Prediction.image_id).where(
                Prediction.model_version_id == version_id, Prediction.image_id.in_(chunk)
            )
            for prediction_id, image_id in s.execute(stmt_ids):
                ids[(image_id, version_id)] = prediction_id
    return ids
