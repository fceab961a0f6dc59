"""The batcher: N decoded images or max_wait, whichever comes first, then one model call.

Content already scored by the model in service (same sha256, in the database or seen moments
ago) is not run through the model again, and duplicates inside one batch run once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import tenacity
from sqlalchemy.exc import OperationalError

from detector.decision import DecidedBy, decide
from detector.errors import ModelLoadError
from detector.imageio import LoadLimits
from detector.scoring import FaceScore, PictureScore
from storage import queries
from storage.db import Database
from storage.models import Prediction
from watcher.decoding import decode_job
from watcher.messages import Classified, Decoded, Outcome, Rejected, Screened, WriterTask
from watcher.models_watch import ActiveModel, ModelSlot
from watcher.threads import WAKE_S, Worker, put_while_alive

logger = logging.getLogger(__name__)


class _Stopped(Exception):
    """The batcher was stopped while waiting to try a batch again."""


# Scores remembered per model for content still on its way to the database.
RECENT_SCORES = 4096
# How often a batch that is filling looks whether more pictures are still on their way.
IDLE_CHECK_S = 0.005
# First wait before a batch is tried again after the model or the database failed.
RETRY_FIRST_S = 0.5


class ModelUnavailable(Exception):
    """The model failed on a batch and on its own probe: the model is at fault, not the images."""


def _log_retry(state: tenacity.RetryCallState) -> None:
    batch = state.args[0] if state.args else ()
    logger.error(
        "cannot screen a batch of %d now (%s); trying again in %.1f s",
        len(batch),
        state.outcome.exception() if state.outcome else None,
        state.next_action.sleep if state.next_action else 0.0,
    )


class Batcher(Worker):
    """Collects decoded images into batches, scores them and hands outcomes to the writer."""

    def __init__(
        self,
        db: Database,
        decoded: queue.Queue[Decoded | None],
        tasks: queue.Queue[WriterTask],
        slot: ModelSlot,
        *,
        batch_size: int,
        max_wait_s: float,
        limits: LoadLimits,
        writer: threading.Thread,
        retry_max_s: float = 300.0,
        on_batch: Callable[[int, float], None] | None = None,
        upstream_idle: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__("batcher")
        # True when no picture is waiting for or in decoding: then nothing can join the batch,
        # and waiting out max_wait would only add latency (one upload on an idle service).
        self._upstream_idle = upstream_idle or (lambda: False)
        # Told (pictures, seconds) of every model call that scored a batch (the metrics).
        self._on_batch = on_batch
        self._db = db
        self._decoded = decoded
        self._tasks = tasks
        self._slot = slot
        self._batch_size = max(batch_size, 1)
        self._max_wait_s = max_wait_s
        self._limits = limits
        self._writer = writer
        self._retry_max_s = max(retry_max_s, RETRY_FIRST_S)
        # sha256 -> verdict of the model in service, for content not yet stored.
        self._recent: OrderedDict[str, Call] = OrderedDict()
        # sha256 -> whole and face scores behind those verdicts (shown again when reused).
        self._pictures: OrderedDict[str, PictureScore] = OrderedDict()
        self._recent_model = -1
        self.batches = 0
        self.files = 0
        # One controller for the batcher's life. A tenacity controller refers to itself (its
        # bound methods), so it is freed only by the cyclic garbage collector: one made per
        # batch, with the batch in its closures, kept every batch's pictures (14 MB of views
        # for 32 pictures) alive until a collection, and the peak memory grew with the backlog.
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((ModelUnavailable, OperationalError)),
            wait=tenacity.wait_exponential(multiplier=RETRY_FIRST_S, max=self._retry_max_s),
            before_sleep=_log_retry,
            sleep=self._pause,
        )

    def on_stop(self) -> None:
        """Wake the batcher if it waits for the first item of a batch."""
        with contextlib.suppress(queue.Full):
            self._decoded.put_nowait(None)

    def loop(self) -> None:
        """Batch, score and hand over until stopped; the batch in progress is finished."""
        while self.should_keep_running():
            items = self.collect()
            if not items:
                continue
            outcomes = self._screen_retrying(items)
            if outcomes is None:
                return  # stopped while waiting: the writer requeues the unfinished claims
            self.batches += 1
            self.files += len(outcomes)
            put_while_alive(self._tasks, Screened(tuple(outcomes)), self._writer)

    def _screen_retrying(self, items: list[Decoded]) -> list[Outcome] | None:
        """Screen a batch; while the model or the database fails, wait and try again.

        Those failures say nothing about the images, so they must not become verdicts (a
        model file replaced under a running daemon once turned a whole inbox into
        "rejected"). The model in service is read again on every try, so a model the
        watcher swaps in ends the outage. None when stopped before the batch got through.
        """
        try:
            return self._retrying(self._screen_with_active, items)
        except _Stopped:
            return None
        except Exception as exc:  # a bug, not an outage: these files end rejected
            logger.exception("screening a batch of %d failed", len(items))
            return [
                Rejected(i.job, "unreadable", f"internal error while screening: {exc}")
                for i in items
            ]

    def _screen_with_active(self, items: list[Decoded]) -> list[Outcome]:
        # The model in service is read again on every try (the watcher may swap it in).
        return self.screen(items, self._slot.active)

    def _pause(self, seconds: float) -> None:
        """Wait before the next try; a stop ends the waiting (and the retrying)."""
        if self.stopped_event.wait(seconds):
            raise _Stopped

    def collect(self) -> list[Decoded]:
        """Up to batch_size items; waits at most max_wait after the first one arrived, and not
        at all once nothing more is on its way."""
        try:
            first = self._decoded.get(timeout=WAKE_S)
        except queue.Empty:
            return []
        items = [first] if first is not None else []
        deadline = time.monotonic() + self._max_wait_s
        while items and len(items) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._decoded.get(timeout=min(remaining, IDLE_CHECK_S))
                    if remaining > 0
                    else None
                )
            except queue.Empty:
                if self._upstream_idle() and self._decoded.empty():
                    break
                continue
            if item is None:
                # Wait is over, or stop() woke us: take what is already there and go.
                items.extend(self._drain(self._batch_size - len(items)))
                break
            items.append(item)
        return items

    def _drain(self, limit: int) -> list[Decoded]:
        found: list[Decoded] = []
        while len(found) < limit:
            try:
                item = self._decoded.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                found.append(item)
        return found

    def screen(self, items: list[Decoded], active: ActiveModel) -> list[Outcome]:
        """Score a batch with `active`, reusing known verdicts for known content."""
        fitted = [self._fit(item, active) for item in items]
        decoded = [item for item in fitted if isinstance(item, Decoded)]
        known = self._known_scores(decoded, active.model_version_id)
        fresh: dict[str, Decoded] = {}
        for image in decoded:
            if image.sha256 not in known:
                fresh.setdefault(image.sha256, image)
        scores, infer_ms, errors = self._predict(list(fresh.values()), active)
        self._remember(fresh, scores, active)
        outcomes: list[Outcome] = []
        for item in fitted:
            if isinstance(item, Rejected):
                outcomes.append(item)
            elif item.sha256 in errors:
                reason = f"the model could not screen this image: {errors[item.sha256]}"
                outcomes.append(Rejected(item.job, "unreadable", reason, item.sha256))
            else:
                reused = item.sha256 in known
                call = (
                    known[item.sha256] if reused else _call(item, scores[item.sha256].score, active)
                )
                picture = self._pictures.get(item.sha256) if reused else scores[item.sha256]
                outcomes.append(self._classified(item, call, active, infer_ms, picture, reused))
        return outcomes

    def _fit(self, item: Decoded, active: ActiveModel) -> Decoded | Rejected:
        """Decoded for an earlier model (other input size or views): decode again."""
        spec = active.classifier.spec
        if item.spec == spec.key:
            return item
        again = decode_job(item.job, spec, self._limits, provenance=False)
        if isinstance(again, Decoded):  # same bytes, same metadata: keep what was read
            return dataclasses.replace(again, findings=item.findings)
        return again

    def _known_scores(self, items: list[Decoded], model_version_id: int) -> dict[str, Call]:
        if model_version_id != self._recent_model:
            self._recent.clear()
            self._pictures.clear()
            self._recent_model = model_version_id
        known = {i.sha256: self._recent[i.sha256] for i in items if i.sha256 in self._recent}
        missing = {i.sha256 for i in items} - known.keys()
        if missing:
            with self._db.session() as s:
                stored = queries.predictions_for(s, missing, model_version_id)
                known.update({sha: _stored_call(p) for sha, p in stored.items()})
                faces = queries.faces_for(s, [p.id for p in stored.values()])
                for sha, p in stored.items():
                    self._pictures[sha] = _stored_picture(p, faces.get(p.id, []))
        return known

    def _remember(
        self, items: dict[str, Decoded], scores: dict[str, PictureScore], active: ActiveModel
    ) -> None:
        for sha256, picture in scores.items():
            self._recent[sha256] = _call(items[sha256], picture.score, active)
            self._pictures[sha256] = picture
        while len(self._recent) > RECENT_SCORES:
            self._recent.popitem(last=False)
        while len(self._pictures) > RECENT_SCORES:
            self._pictures.popitem(last=False)

    def _predict(
        self, items: list[Decoded], active: ActiveModel
    ) -> tuple[dict[str, PictureScore], float, dict[str, str]]:
        """Scores by sha256, model time per image (ms), and errors for images that failed.

        Every view of every picture (whole + faces) goes through one model call.
        """
        if not items:
            return {}, 0.0, {}
        start = time.perf_counter()
        try:
            scores = active.classifier.score_pictures([i.views for i in items])
            found = {i.sha256: s for i, s in zip(items, scores, strict=True)}
            errors: dict[str, str] = {}
        except Exception as exc:
            self._check_model(active, exc)
            # The model works: one image should not cost the batch, so find the culprit.
            logger.exception("model failed on a batch of %d; retrying one by one", len(items))
            found, errors = self._predict_singly(items, active)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if self._on_batch is not None:
            self._on_batch(len(items), elapsed_ms / 1000.0)
        return found, elapsed_ms / len(items), errors

    @staticmethod
    def _check_model(active: ActiveModel, error: Exception) -> None:
        """Raise ModelUnavailable when the model fails on its fixed probe batch too."""
        try:
            active.classifier.probe()
        except ModelLoadError as exc:
            raise ModelUnavailable(f"model {active.classifier.version} failed: {error}") from exc

    def _predict_singly(
        self, items: list[Decoded], active: ActiveModel
    ) -> tuple[dict[str, PictureScore], dict[str, str]]:
        found: dict[str, PictureScore] = {}
        errors: dict[str, str] = {}
        for item in items:
            try:
                found[item.sha256] = active.classifier.score_pictures([item.views])[0]
            except Exception as exc:
                errors[item.sha256] = str(exc) or type(exc).__name__
        return found, errors

    @staticmethod
    def _classified(
        item: Decoded,
        call: Call,
        active: ActiveModel,
        infer_ms: float,
        picture: PictureScore | None,
        reused: bool,
    ) -> Classified:
        """`picture`: the whole and face scores behind the verdict (None when unknown)."""
        faces = picture.faces if picture is not None and item.face_view else None
        return Classified(
            job=item.job,
            sha256=item.sha256,
            score=call.score,
            label=call.label,
            model_version_id=active.model_version_id,
            model_version=active.classifier.version,
            width=item.width,
            height=item.height,
            format=item.format,
            decode_ms=item.decode_ms,
            infer_ms=0.0 if reused else infer_ms,
            reused=reused,
            whole_score=None if picture is None else picture.whole_score,
            faces=faces,
            decided_by=call.decided_by,
            model_label=call.model_label,
            findings=item.findings,
        )


class Call(NamedTuple):
    """What was decided for one content hash by the model in service."""

    score: float
    label: str  # the verdict: real, ai or uncertain
    decided_by: str  # model or provenance
    model_label: str  # the model's own real/ai at its threshold


def _call(item: Decoded, score: float, active: ActiveModel) -> Call:
    """Provenance declaring AI wins, else the model's label with its uncertain band."""
    classifier = active.classifier
    decision = decide(score, classifier.threshold, classifier.band, item.findings or ())
    model_label = "ai" if score >= classifier.threshold else "real"
    return Call(score, str(decision.label), str(decision.decided_by), model_label)


def _stored_call(p: Prediction) -> Call:
    """A stored prediction's verdict (rows from before revision 0003 have none: the label)."""
    return Call(p.score, p.verdict or p.label, p.decided_by or DecidedBy.MODEL, p.label)


def _stored_picture(p: Prediction, faces: list[queries.FaceRecord]) -> PictureScore:
    """The scores of a stored verdict (no whole score before revision 0002: its score)."""
    whole = p.whole_score if p.whole_score is not None else p.score
    return PictureScore(
        score=p.score,
        whole_score=whole,
        faces=tuple(
            FaceScore(f.index, (f.x, f.y, f.w, f.h), f.detector_score, f.score) for f in faces
        ),
    )
