"""SQLAlchemy models: the tables of the verdict store and the `verdicts` view.

Every datetime is timezone-aware UTC in Python. Enum-like columns are plain strings guarded by
CHECK constraints, so the schema stays readable from `sqlite3`/`psql` and portable.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: Alembic needs them to alter or drop constraints later,
# and PostgreSQL would otherwise invent its own.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ModelStatus(enum.StrEnum):
    """Lifecycle of a registered model version."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"
    REJECTED = "rejected"


class FileState(enum.StrEnum):
    """Where one file arrival is in the screening pipeline."""

    PENDING = "pending"
    CLAIMED = "claimed"
    CLASSIFIED = "classified"
    REJECTED = "rejected"


class Origin(enum.StrEnum):
    """How a file arrival was noticed."""

    INBOX = "inbox"
    SCAN = "scan"
    API = "api"


class Disposition(enum.StrEnum):
    """What happened to the file itself after its verdict (moved aside, kept in place...)."""

    PENDING = "pending"
    MOVED = "moved"
    KEPT = "kept"
    FAILED = "failed"


class RunStatus(enum.StrEnum):
    """Outcome of a training run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


LABEL_VALUES = ("real", "ai")
# A verdict: the model's two labels, or "uncertain" for a score inside the model's band.
VERDICT_LABELS = (*LABEL_VALUES, "uncertain")
# What made a verdict: the model, or provenance metadata declaring AI generation.
DECIDED_BY_VALUES = ("model", "provenance")
# How much a provenance finding counts (the detector's provenance.Strength values).
EVIDENCE_STRENGTHS = ("declares_ai", "hint", "camera_claim", "info", "ignored")
FINAL_FILE_STATES = (FileState.CLASSIFIED.value, FileState.REJECTED.value)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _in(column: str, values: Any) -> str:
    quoted = ", ".join(f"'{enum_value(v)}'" for v in values)
    return f"{column} IN ({quoted})"


def enum_value(value: Any) -> str:
    """The plain string stored for an enum member or a string."""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware UTC datetimes; naive input is taken to be UTC already."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC before it reaches the driver."""
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite has no time zone type; a naive UTC string keeps text comparisons ordered.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite hands back naive."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention and our column types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Image(Base):
    """One distinct image content, identified by its SHA-256."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # One readable line summing up its provenance findings ("" none; None: never read).
    evidence: Mapped[str | None] = mapped_column(Text)


class Evidence(Base):
    """One provenance finding in an image's bytes (C2PA, XMP, PNG text, EXIF, or an error)."""

    __tablename__ = "evidence"
    __table_args__ = (
        UniqueConstraint("image_id", "position"),
        CheckConstraint(_in("strength", EVIDENCE_STRENGTHS), name="strength"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    # 0 = the strongest finding.
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    strength: Mapped[str] = mapped_column(String(16))
    says: Mapped[str] = mapped_column(Text)


class ModelVersion(Base):
    """A registered model bundle and where it stands (candidate, champion...)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("version"),
        CheckConstraint(_in("status", ModelStatus), name="status"),
        # At most one champion: a half-finished promotion must fail, not serve two models.
        Index(
            "uq_model_versions_one_champion",
            "status",
            unique=True,
            sqlite_where=text("status = 'champion'"),
            postgresql_where=text("status = 'champion'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(128))
    arch: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.CANDIDATE.value)
    input_size: Mapped[int]
    threshold: Mapped[float]
    data_fingerprint: Mapped[str] = mapped_column(String(128), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decision: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
    # When it last left service; `models rollback` returns to the most recently retired one.
    retired_at: Mapped[datetime | None]


class Prediction(Base):
    """The score one model version gave one image."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("image_id", "model_version_id"),
        CheckConstraint(_in("label", LABEL_VALUES), name="label"),
        CheckConstraint("verdict IS NULL OR " + _in("verdict", VERDICT_LABELS), name="verdict"),
        CheckConstraint(
            "decided_by IS NULL OR " + _in("decided_by", DECIDED_BY_VALUES), name="decided_by"
        ),
        Index(None, "model_version_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    score: Mapped[float]
    label: Mapped[str] = mapped_column(String(8))
    decode_ms: Mapped[float | None]
    infer_ms: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Faces the model scored in the picture (None: screened before faces were looked for).
    faces: Mapped[int | None]
    # The whole-picture view's own score, before it was combined with the faces'.
    whole_score: Mapped[float | None]
    # The verdict: `label` (the model's call at its threshold), "uncertain" inside its band,
    # or "ai" from provenance; None for predictions stored before revision 0003 (= label).
    verdict: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(16))


class Face(Base):
    """One face a model version scored in a picture (through its prediction)."""

    __tablename__ = "faces"
    __table_args__ = (
        UniqueConstraint("prediction_id", "face_index"),
        CheckConstraint("face_index >= 0", name="face_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id"))
    # 0 = the detector's most confident face.
    face_index: Mapped[int]
    # Box in pixels of the picture as displayed (EXIF orientation applied).
    x: Mapped[int]
    y: Mapped[int]
    w: Mapped[int]
    h: Mapped[int]
    detector_score: Mapped[float]
    # P(ai) of this face alone.
    score: Mapped[float]


class FileRow(Base):
    """One file arrival (path + size + mtime) and its trip through the pipeline."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("path", "size_bytes", "mtime_ns"),
        CheckConstraint(_in("origin", Origin), name="origin"),
        CheckConstraint(_in("state", FileState), name="state"),
        CheckConstraint(
            "disposition IS NULL OR " + _in("disposition", Disposition), name="disposition"
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(None, "state"),
        Index(None, "sha256"),
        Index(None, "screened_at"),
        # due_dispositions(): disposition = 'pending' AND next_attempt_at <= now.
        Index(None, "disposition", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), default=FileState.PENDING.value)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    disposition: Mapped[str | None] = mapped_column(String(16))
    dest_path: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    discovered_at: Mapped[datetime] = mapped_column(default=utcnow)
    screened_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HumanLabel(Base):
    """The ground truth a person gave an image (one per image)."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("image_id"),
        CheckConstraint(_in("label", LABEL_VALUES), name="label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    label: Mapped[str] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    """Metrics of one model version on one dataset."""

    __tablename__ = "evaluations"
    __table_args__ = (Index(None, "model_version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    dataset: Mapped[str] = mapped_column(String(256))
    data_fingerprint: Mapped[str] = mapped_column(String(128), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    """One (scheduled or manual) training run and its outcome."""

    __tablename__ = "training_runs"
    __table_args__ = (CheckConstraint(_in("status", RunStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    error: Mapped[str | None] = mapped_column(Text)
    candidate_version: Mapped[str | None] = mapped_column(String(128))
    decision: Mapped[dict[str, Any] | None]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ModelActivation(Base):
    """A process that started serving a model version."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    activated_at: Mapped[datetime] = mapped_column(default=utcnow)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]


# The view is created by the migration, not by metadata.create_all: it lives in its own
# MetaData so nothing ever tries to create it as a table.
view_metadata = MetaData()

verdicts_view = Table(
    "verdicts",
    view_metadata,
    Column("id", Integer, primary_key=True),
    Column("path", Text),
    Column("sha256", String(64)),
    Column("status", String(16)),
    Column("label", String(16)),
    Column("score", Float),
    Column("model_version", String(128)),
    Column("reason", Text),
    Column("created_at", UTCDateTime()),
    Column("discovered_at", UTCDateTime()),
    Column("decode_ms", Float),
    Column("infer_ms", Float),
    Column("disposition", String(16)),
    Column("dest_path", Text),
    Column("reason_code", String(32)),
    Column("faces", Integer),
    Column("face_x", Integer),
    Column("face_y", Integer),
    Column("face_w", Integer),
    Column("face_h", Integer),
    Column("face_score", Float),
    Column("whole_score", Float),
    Column("evidence", Text),
    Column("decided_by", String(16)),
    Column("origin", String(8)),
)
