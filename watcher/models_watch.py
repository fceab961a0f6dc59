"""Which model bundle serves, loading it safely, and switching to a new one between batches.

One function, `resolve_model`, answers "which bundle should serve" for scan and serve alike:
the configured bundle path, else the registry's champion, else the bundled default model.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session

from detector.bundle import KERAS_FILE, META_FILE, TFLITE_FILE, bundled_model_dir
from detector.config import DetectorConfig
from detector.errors import ModelLoadError
from storage import queries
from storage.db import Database
from watcher.messages import ActivateModel, WriterTask
from watcher.settings import Settings
from watcher.threads import WAKE_S, Worker, put_until

if TYPE_CHECKING:
    import queue

    from detector.classifier import Classifier
    from detector.views import ViewSpec

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The bundle that should serve and why (config, champion or bundled)."""

    bundle_dir: Path
    source: str


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """A loaded classifier with its registry id and the bundle state it was loaded from."""

    classifier: Classifier
    model_version_id: int
    fingerprint: str
    choice: ModelChoice


def configured_bundle(settings: Settings) -> Path | None:
    """The bundle folder named by `[detector] model`, or None for "default"."""
    raw = settings.detector.model.strip()
    if raw == DEFAULT_MODEL:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = settings.base_dir / path
    # Pointing at model.keras (or model.json) inside the bundle means the bundle.
    if path.name in (KERAS_FILE, META_FILE, TFLITE_FILE) or path.is_file():
        path = path.parent
    return path


def resolve_model(settings: Settings, db: Database) -> ModelChoice:
    """Which bundle should serve: configured path, else the champion, else the bundled model."""
    explicit = configured_bundle(settings)
    if explicit is not None:
        return ModelChoice(explicit, "config")
    with db.session() as s:
        row = queries.champion(s)
        champion = (row.version, row.path) if row is not None else None
    if champion is not None:
        path = Path(champion[1]).expanduser()
        if not path.is_absolute():
            path = settings.base_dir / path
        if (path / META_FILE).is_file():
            return ModelChoice(path, "champion")
        logger.warning("champion %s has no bundle at %s; using the bundled model", *champion)
    return ModelChoice(bundled_model_dir(), "bundled")


def bundle_fingerprint(bundle_dir: Path) -> str:
    """Changes whenever the bundle folder or one of its files is replaced or rewritten."""
    parts = [str(bundle_dir)]
    for path in (bundle_dir, *(bundle_dir / n for n in (KERAS_FILE, META_FILE, TFLITE_FILE))):
        try:
            st = os.stat(path)
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def load_classifier(bundle_dir: Path, cfg: DetectorConfig) -> Classifier:
    """Load and probe a bundle; ModelLoadError for anything that cannot serve."""
    from detector.classifier import Classifier  # lazy: keeps `--help` and imports fast

    try:
        classifier = Classifier.load(
            bundle_dir,
            backend=cfg.backend,
            mixed_precision=cfg.mixed_precision,
            threshold=cfg.threshold,
            uncertain_band=cfg.uncertain_band,
            face_overrides=cfg.face_overrides(),
        )
        # Our own probe on top of the detector's: a full-size batch of plausible images.
        size = classifier.input_size
        probe = np.random.default_rng(7).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
        scores = classifier.predict(probe)
    except ModelLoadError:
        raise
    except Exception as exc:  # whatever a broken bundle throws, it is refused, not fatal
        raise ModelLoadError(f"cannot use model bundle {bundle_dir}: {exc}") from exc
    if scores.shape != (3,) or not np.all(np.isfinite(scores)):
        raise ModelLoadError(f"model bundle {bundle_dir} gave unusable probe scores {scores}")
    return classifier


def activation_task(classifier: Classifier) -> ActivateModel:
    """The writer task that registers `classifier`'s version and records its activation."""
    meta = classifier.meta
    return ActivateModel(
        version=meta.version,
        arch=meta.arch,
        path=str(classifier.bundle_dir),
        input_size=meta.input_size,
        threshold=float(meta.threshold),
        data_fingerprint=meta.data_fingerprint,
        metrics=dict(meta.metrics),
        training=dict(meta.training),
    )


def activate(s: Session, task: ActivateModel) -> int:
    """Register the version (get-or-create) and record this process serving it; its id."""
    row = queries.register_model_version(
        s,
        version=task.version,
        arch=task.arch,
        path=task.path,
        input_size=task.input_size,
        threshold=task.threshold,
        data_fingerprint=task.data_fingerprint,
        metrics=task.metrics,
        training=task.training,
    )
    queries.record_activation(s, task.version, socket.gethostname(), os.getpid())
    return row.id


def open_initial_model(settings: Settings, db: Database) -> ActiveModel:
    """Load the model to start with (before any thread runs); ModelLoadError when none works."""
    choice = resolve_model(settings, db)
    try:
        classifier = load_classifier(choice.bundle_dir, settings.detector)
    except ModelLoadError:
        if choice.source != "champion":
            raise
        # A broken champion must not stop screening while a shipped model exists.
        logger.exception("champion bundle %s cannot serve; trying the bundled model", choice)
        choice = ModelChoice(bundled_model_dir(), "bundled")
        classifier = load_classifier(choice.bundle_dir, settings.detector)
    task = activation_task(classifier)
    model_version_id = db.retrying(lambda s: activate(s, task))
    return ActiveModel(classifier, model_version_id, bundle_fingerprint(choice.bundle_dir), choice)


class ModelSlot:
    """The model in service; the batcher reads it once per batch, so swaps fall between batches."""

    def __init__(self, active: ActiveModel) -> None:
        self._lock = threading.Lock()
        self._active = active

    @property
    def active(self) -> ActiveModel:
        """The model to use for the next batch."""
        with self._lock:
            return self._active

    @property
    def spec(self) -> ViewSpec:
        """The views the current model scores (what decoders cut)."""
        return self.active.classifier.spec

    def replace(self, active: ActiveModel) -> None:
        """Serve `active` from the next batch on."""
        with self._lock:
            self._active = active


class ModelWatcher(Worker):
    """Polls the model choice and bundle files; loads, probes and activates a changed model."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        slot: ModelSlot,
        writer_tasks: queue.Queue[WriterTask],
        poll_s: float,
    ) -> None:
        super().__init__("model-watcher")
        self._settings = settings
        self._db = db
        self._slot = slot
        self._tasks = writer_tasks
        self._poll_s = max(poll_s, 0.05)
        self._last_seen = slot.active.fingerprint
        self._refused: set[str] = set()

    def loop(self) -> None:
        """Check every poll interval until stopped; a failed check is logged and retried."""
        while not self.stopped_event.wait(self._poll_s):
            try:
                self.check()
            except Exception:
                logger.exception("model check failed; keeping the current model")

    def check(self) -> None:
        """One poll: switch models if the choice or its files changed and the new one works."""
        choice = resolve_model(self._settings, self._db)
        fingerprint = bundle_fingerprint(choice.bundle_dir)
        current = self._slot.active
        if fingerprint == current.fingerprint or fingerprint in self._refused:
            self._last_seen = fingerprint
            return
        if fingerprint != self._last_seen:
            # Seen for the first time: wait one more poll so a bundle being copied settles.
            self._last_seen = fingerprint
            return
        try:
            classifier = load_classifier(choice.bundle_dir, self._settings.detector)
        except ModelLoadError as exc:
            self._refused.add(fingerprint)
            logger.error(
                "refused model %s: %s; still serving %s",
                choice.bundle_dir,
                exc,
                current.classifier.version,
            )
            return
        model_version_id = self._register(classifier)
        if model_version_id is None:
            return
        self._slot.replace(ActiveModel(classifier, model_version_id, fingerprint, choice))
        logger.info(
            "switched model %s -> %s (%s, %s)",
            current.classifier.version,
            classifier.version,
            choice.source,
            choice.bundle_dir,
        )

    def _register(self, classifier: Classifier) -> int | None:
        """Have the writer register and record the activation; None when stopping."""
        task = activation_task(classifier)
        if not put_until(self._tasks, task, self.stopped_event):
            return None
        while self.should_keep_running():
            try:
                return task.reply.result(timeout=WAKE_S)
            except FutureTimeout:
                continue
        return None
