"""Messages passed between pipeline stages; all frozen, slotted and cheap to queue."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

from detector.decision import DecidedBy
from detector.provenance import Finding
from detector.scoring import FaceScore
from detector.views import Views

ORIGIN_INBOX = "inbox"
ORIGIN_SCAN = "scan"
ORIGIN_API = "api"


@dataclass(frozen=True, slots=True)
class Discovered:
    """A complete file the intake found; the writer turns it into a `files` row."""

    path: str
    size_bytes: int
    mtime_ns: int
    origin: str


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed `files` row on its way to the decoders."""

    file_id: int
    path: str
    size_bytes: int
    mtime_ns: int
    origin: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """A job whose bytes were read and decoded into the views the model scores."""

    job: Job
    sha256: str
    views: Views
    decode_ms: float
    # What the file's provenance metadata says (read from the same bytes while decoding;
    # None: not read, [detector] provenance = false).
    findings: tuple[Finding, ...] | None = None
    # ViewSpec.key of the model the views were cut for (another model may need others).
    spec: tuple[int, bool, bool] = (0, False, False)

    @property
    def width(self) -> int:
        """The picture's width as displayed (after EXIF orientation)."""
        return self.views.source_width

    @property
    def height(self) -> int:
        """The picture's height as displayed."""
        return self.views.source_height

    @property
    def format(self) -> str:
        """The container format ("JPEG", "PNG", ...)."""
        return self.views.format

    @property
    def face_view(self) -> bool:
        """True when faces were looked for (a model with a face view)."""
        return self.spec[1]


@dataclass(frozen=True, slots=True)
class Classified:
    """A job the model (or an earlier verdict on the same content) scored."""

    job: Job
    sha256: str
    score: float
    label: str
    model_version_id: int
    model_version: str
    width: int
    height: int
    format: str
    decode_ms: float
    infer_ms: float
    reused: bool
    # "model", or "provenance" when the metadata declared AI generation (label "ai").
    decided_by: str = DecidedBy.MODEL
    # The model's own call at its threshold (real/ai), whatever the verdict `label` became.
    model_label: str = ""
    # The whole view's own score and the faces' (None: reused, or a model without faces).
    whole_score: float | None = None
    faces: tuple[FaceScore, ...] | None = None
    findings: tuple[Finding, ...] | None = None


# Rejection code of an arrival that was gone (or had changed) when its turn came. If the same
# (path, size, mtime) is there again later, the writer screens it again.
VANISHED: Final[str] = "vanished"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A job that cannot be screened, with the detector's rejection code and reason."""

    job: Job
    code: str
    reason: str
    sha256: str | None = None


Outcome = Classified | Rejected


@dataclass(frozen=True, slots=True)
class Screened:
    """Writer task: store these outcomes (one transaction)."""

    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True, slots=True)
class ActivateModel:
    """Writer task: register a model version, record its activation, reply with its id."""

    version: str
    arch: str
    path: str
    input_size: int
    threshold: float
    data_fingerprint: str
    metrics: dict[str, Any]
    training: dict[str, Any]
    reply: Future[int] = field(default_factory=Future, compare=False)


@dataclass(frozen=True, slots=True)
class WhenIdle:
    """Writer task: resolve `reply` once nothing is queued, claimed or due to be moved."""

    reply: Future[None] = field(default_factory=Future, compare=False)


@dataclass(frozen=True, slots=True)
class Stop:
    """Writer task: store what is queued before this, release open claims, exit."""


@dataclass(frozen=True, slots=True)
class ScreenNow:
    """Writer task: screen this file ahead of the queue (an upload to the HTTP API) and resolve
    `reply` with its verdict once stored (at once when the same file was screened before)."""

    file: Discovered
    reply: Future[Verdict] = field(default_factory=Future, compare=False)


WriterTask = Discovered | ScreenNow | Screened | ActivateModel | WhenIdle | Stop


@dataclass(frozen=True, slots=True)
class Verdict:
    """The user-facing verdict of one file (the fields of the `verdicts` view that scan prints)."""

    file_id: int
    path: str
    sha256: str | None
    status: str
    label: str | None
    score: float | None
    model_version: str | None
    reason: str | None
    created_at: str | None
    # "model" or "provenance", and one readable line of the provenance findings.
    decided_by: str | None = None
    evidence: str | None = None
    # The whole view's own score, and each face's (None: no face view, or not screened).
    whole_score: float | None = None
    faces: tuple[FaceScore, ...] | None = None
    # Milliseconds spent decoding the file and (per picture of its batch) in the model: the
    # API's answer carries them (scan prints the fields above; timings are per content).
    decode_ms: float | None = None
    infer_ms: float | None = None

    def faces_json(self) -> list[dict[str, Any]] | None:
        """Faces as JSON objects: index, box [x, y, w, h], detector_score, score."""
        if self.faces is None:
            return None
        return [
            {
                "index": f.index,
                "box": list(f.box),
                "detector_score": round(f.detector_score, 4),
                "score": f.score,
            }
            for f in self.faces
        ]

    def to_json_dict(self) -> dict[str, Any]:
        """The fields `scan --json` prints, in the documented order (new ones appended)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "status": self.status,
            "label": self.label,
            "score": self.score,
            "model_version": self.model_version,
            "reason": self.reason,
            "created_at": self.created_at,
            "whole_score": self.whole_score,
            "faces": None if self.faces is None else len(self.faces),
            "face_list": self.faces_json(),
            "decided_by": self.decided_by,
            "evidence": self.evidence,
        }
