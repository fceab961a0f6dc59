"""Query functions: each takes a Session and never commits; the caller owns the transaction.

Arguments are plain values (str, int, dict); no detector types cross into storage. Everything
here runs on SQLite and PostgreSQL (ON CONFLICT through each dialect's own insert()).

One module per concern; every public name is re-exported here, so callers write
`from storage import queries` and `queries.claim_files(...)`.
"""

from __future__ import annotations

from storage.queries._common import NotFound
from storage.queries.evidence import EvidenceItem, ImageEvidence, evidence_for, store_evidence
from storage.queries.faces import FaceRecord, faces_for, faces_for_files, insert_faces
from storage.queries.files import (
    DispositionUpdate,
    FileArrival,
    backlog_counts,
    claim_files,
    discover_file,
    discover_files,
    due_dispositions,
    get_file,
    held_claims,
    mark_classified,
    mark_rejected,
    record_disposition,
    record_dispositions,
    release_claims,
    requeue_rejected,
)
from storage.queries.images import (
    ClassifiedFile,
    add_prediction,
    predictions_for,
    store_classified,
    upsert_image,
)
from storage.queries.labels import human_labels, set_label
from storage.queries.registry import (
    champion,
    get_model_version,
    list_activations,
    list_model_versions,
    promote,
    record_activation,
    register_model_version,
    rollback_champion,
    set_model_status,
)
from storage.queries.review import FaceBox, ReviewItem, recent_for_review
from storage.queries.runs import (
    add_evaluation,
    finish_training_run,
    latest_evaluation,
    list_training_runs,
    start_training_run,
)
from storage.queries.verdicts import VERDICT_COLUMNS, VerdictRow, list_verdicts, ping, verdicts_of
from storage.queries.workers import screenings_by_worker

__all__ = [
    "VERDICT_COLUMNS",
    "ClassifiedFile",
    "DispositionUpdate",
    "EvidenceItem",
    "FaceBox",
    "FaceRecord",
    "FileArrival",
    "ImageEvidence",
    "NotFound",
    "ReviewItem",
    "VerdictRow",
    "add_evaluation",
    "add_prediction",
    "backlog_counts",
    "champion",
    "claim_files",
    "discover_file",
    "discover_files",
    "due_dispositions",
    "evidence_for",
    "faces_for",
    "faces_for_files",
    "finish_training_run",
    "get_file",
    "get_model_version",
    "held_claims",
    "human_labels",
    "insert_faces",
    "latest_evaluation",
    "list_activations",
    "list_model_versions",
    "list_training_runs",
    "list_verdicts",
    "mark_classified",
    "mark_rejected",
    "ping",
    "predictions_for",
    "promote",
    "recent_for_review",
    "record_activation",
    "record_disposition",
    "record_dispositions",
    "register_model_version",
    "release_claims",
    "requeue_rejected",
    "rollback_champion",
    "screenings_by_worker",
    "set_label",
    "set_model_status",
    "start_training_run",
    "store_classified",
    "store_evidence",
    "upsert_image",
    "verdicts_of",
]
