"""One retraining run: train a candidate, compare it with the champion, promote only if better.

Steps, all recorded in `training_runs`:
1. load the training data ([training] data, else the Kaggle download) and add the images people
   labelled (`deepfake-detector label`) to the TRAIN split only: a corrected inbox image must
   never leak into the held-out data the decision is based on;
2. train a candidate (`training.fit.train`) into the model store;
3. evaluate candidate and champion on the same held-out test split (`training.evaluate`);
4. decide with `training.gate.decide` (overall and per source, with the configured margins);
5. in ONE transaction: register the candidate, store both evaluations, promote it or mark it
   rejected with the reasons, and finish the run, so no crash leaves a half-made promotion;
6. write the candidate's evaluation report (either way), and the serving model's if promoted.
Any exception marks the run failed with its error; the champion is untouched. The daemon picks
up a new champion by polling the registry, without a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy.orm import Session

from detector.bundle import ModelMeta, new_version, read_meta
from detector.errors import ImageRejected
from detector.imageio import LoadLimits, read_file, sha256_bytes
from reports.evaluation import EvaluationInput, PreviousModel, build_evaluation_page
from reports.page import Stamp
from reports.site import candidate_page_name, write_index, write_report
from storage import queries
from storage.db import Database
from storage.models import ModelStatus, RunStatus
from training.datasets import (
    DatasetSplits,
    Sample,
    download_kaggle,
    fingerprint,
    load_layout,
    merge,
)
from watcher.models_watch import load_classifier, resolve_model
from watcher.reporting import generate_reports
from watcher.settings import Settings
from watcher.stored_evaluations import PER_IMAGE, per_image, scored_images, test_dataset_name

logger = logging.getLogger(__name__)

HUMAN_SOURCE: Final[str] = "human_label"
LABEL_INDEX: Final[dict[str, int]] = {"real": 0, "ai": 1}


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A model's metrics on the held-out split."""

    version: str
    bundle_dir: Path
    meta: ModelMeta
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    """How a retraining run ended."""

    run_id: int
    status: str  # succeeded | failed
    candidate_version: str | None = None
    promoted: bool = False
    reasons: tuple[str, ...] = ()
    error: str | None = None
    report: Path | None = None

    def summary(self) -> str:
        """One paragraph for the command line."""
        if self.status != "succeeded":
            return f"training run {self.run_id} failed: {self.error}"
        verdict = "promoted to champion" if self.promoted else "rejected; the champion stays"
        lines = [f"training run {self.run_id}: candidate {self.candidate_version} {verdict}"]
        lines += [f"  - {r}" for r in self.reasons]
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


def limit_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (only possible before TensorFlow first runs anything)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as exc:  # already initialised in this process
        logger.warning("cannot limit TensorFlow threads now: %s", exc)


def run_retraining(
    settings: Settings,
    db: Database,
    *,
    epochs: int | None = None,
    export_litert: bool = True,
    **fit_overrides: Any,
) -> RetrainOutcome:
    """Run one retraining; never raises for a failed run (it is recorded as failed).

    `fit_overrides` replace FitSettings fields (e.g. learning_rate) for this run only.
    """
    config = {**_jsonable(dataclasses.asdict(settings.training)), "epochs_override": epochs}
    run_id = db.retrying(lambda s: queries.start_training_run(s, config))
    logger.info("training run %d started", run_id)
    try:
        fit_overrides = {"epochs": epochs, **fit_overrides}
        return _retrain(settings, db, run_id, fit_overrides, export_litert)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        logger.exception("training run %d failed", run_id)
        db.retrying(
            lambda s: queries.finish_training_run(s, run_id, status=RunStatus.FAILED, error=error)
        )
        if not isinstance(exc, Exception):
            raise  # Ctrl-C / SIGTERM still stop the process, after the run is recorded
        return RetrainOutcome(run_id, RunStatus.FAILED, error=error)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in data.items()}


def _json_value(value: Any) -> Any:
    """Paths as strings, also inside lists ([training] data is a list of folders)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    return value


def _retrain(
    settings: Settings,
    db: Database,
    run_id: int,
    fit_overrides: dict[str, Any],
    export_litert: bool,
) -> RetrainOutcome:
    splits = load_training_data(settings)
    extra = labelled_samples(db, splits, settings)
    train_splits = dataclasses.replace(splits, train=splits.train + tuple(extra))
    candidate = train_candidate(
        settings, train_splits, fit_overrides, export_litert, champion_bundle(settings, db)
    )
    test_fp = fingerprint(splits.test)
    cand = evaluate_model(settings, candidate, splits, test_fp)
    champ = evaluate_champion(settings, db, splits, test_fp, exclude=cand.version)
    from training.gate import decide

    decision = decide(
        cand.metrics,
        champ.metrics if champ else None,
        settings.training.promote_margin,
        settings.training.promote_source_margin,
    ).to_dict()
    decision["human_labels_used"] = len(extra)
    dataset = test_dataset_name(splits)
    db.retrying(lambda s: _record(s, run_id, cand, champ, decision, dataset, test_fp))
    promoted = bool(decision["promote"])
    logger.info("candidate %s %s", cand.version, "promoted" if promoted else "rejected")
    report = _write_reports(settings, db, cand, champ, decision, splits, test_fp)
    prune_rejected(settings, db)
    reasons = tuple(str(r) for r in decision.get("reasons", ()))
    return RetrainOutcome(run_id, "succeeded", cand.version, promoted, reasons, report=report)


def prune_rejected(settings: Settings, db: Database) -> list[Path]:
    """Delete bundles of rejected candidates beyond [training] keep_rejected (newest kept).

    Only folders inside the model store are touched; the registry rows, their metrics and the
    candidates' reports stay, so the history of decisions is complete.
    """
    store = settings.detector.model_store.resolve()
    with db.session() as s:
        rejected = [
            Path(v.path)
            for v in queries.list_model_versions(s)
            if v.status == ModelStatus.REJECTED.value
        ]
    removed: list[Path] = []
    for path in (p.resolve() for p in rejected[settings.training.keep_rejected :]):
        if path == store or not path.is_relative_to(store) or not path.is_dir():
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:  # disk hygiene only: never fail the run for it
            logger.warning("could not delete rejected bundle %s: %s", path, exc)
            continue
        logger.info("deleted rejected candidate bundle %s", path)
        removed.append(path)
    return removed


def load_training_data(settings: Settings) -> DatasetSplits:
    """[training] data, or the Kaggle dataset downloaded through kagglehub."""
    cfg = settings.training
    roots = cfg.data or (download_kaggle(cfg.kaggle),)
    return merge(
        [load_layout(r, real_dir=cfg.real_dir, ai_dir=cfg.ai_dir, seed=cfg.seed) for r in roots]
    )


def labelled_samples(db: Database, splits: DatasetSplits, settings: Settings) -> list[Sample]:
    """Human-labelled images still on disk and unchanged, as extra TRAIN samples.

    An image whose content is also in the validation or test split is left out: training on
    it would leak the held-out data the promotion decision is measured on.
    """
    with db.session() as s:
        labels = queries.human_labels(s)
    if not labels:
        return []
    limits = LoadLimits(settings.detector.max_file_bytes, settings.detector.max_pixels)
    held_out = {_sha256(s.path, limits) for s in splits.validate + splits.test}
    samples = []
    for sha, label, path in labels:
        if path is None or sha in held_out:
            continue
        if _sha256(Path(path), limits) != sha:  # moved away, deleted or rewritten since
            logger.info("labelled image %s is no longer at %s; skipped", sha[:12], path)
            continue
        samples.append(Sample(Path(path), LABEL_INDEX[label], "train", HUMAN_SOURCE))
    logger.info("%d human-labelled images join the training data", len(samples))
    return samples


def _sha256(path: Path, limits: LoadLimits) -> str:
    try:
        return sha256_bytes(read_file(path, limits))
    except ImageRejected:
        return ""


def train_candidate(
    settings: Settings,
    splits: DatasetSplits,
    fit_overrides: dict[str, Any],
    export_litert: bool = True,
    init_bundle: Path | None = None,
) -> Path:
    """Train into the model store; the bundle folder (a pretrained architecture starts from
    `init_bundle`'s backbone when given)."""
    from training.fit import FitSettings, train

    fit_settings = FitSettings.from_config(settings.training, **fit_overrides)
    version = new_version(fit_settings.arch)
    dest = settings.detector.model_store / version
    # Per-epoch checkpoints are scratch: the bundle keeps the history that matters.
    with tempfile.TemporaryDirectory(prefix="retrain-") as run_dir:
        result = train(
            splits,
            fit_settings,
            dest=dest,
            run_dir=Path(run_dir),
            version=version,
            cache_dir=settings.training.cache_dir,
            command="deepfake-detector retrain",
            export_litert=export_litert,
            verbose=0,
            init_bundle=init_bundle,
        )
    return result.bundle_dir


def champion_bundle(settings: Settings, db: Database) -> Path | None:
    """The bundle in service now: retraining starts from its backbone (no ImageNet file)."""
    from watcher.models_watch import resolve_model

    try:
        return resolve_model(settings, db).bundle_dir
    except Exception:  # no champion yet, or an unreadable registry: start from ImageNet
        logger.info("no champion bundle to start from", exc_info=True)
        return None


def evaluate_model(
    settings: Settings, bundle_dir: Path, splits: DatasetSplits, test_fp: str
) -> Evaluated:
    """training.evaluate of one bundle on the test split, with per-image scores kept."""
    from training.evaluate import evaluate

    classifier = load_classifier(bundle_dir, settings.detector)
    report = evaluate(classifier, splits.test, cache_dir=settings.training.cache_dir)
    metrics = dict(report.metrics)
    metrics["data_fingerprint"] = test_fp
    metrics[PER_IMAGE] = per_image(report, splits.test, splits.root)
    return Evaluated(classifier.version, bundle_dir, classifier.meta, metrics)


def evaluate_champion(
    settings: Settings, db: Database, splits: DatasetSplits, test_fp: str, *, exclude: str
) -> Evaluated | None:
    """The serving model (champion, else bundled/configured) on the same split, if loadable."""
    from detector.errors import ModelLoadError

    choice = resolve_model(settings, db)
    try:
        if read_meta(choice.bundle_dir).version == exclude:
            return None
        return evaluate_model(settings, choice.bundle_dir, splits, test_fp)
    except (ModelLoadError, OSError, ValueError) as exc:
        logger.warning("no champion to compare with (%s): %s", choice.bundle_dir, exc)
        return None


def _register(s: Session, ev: Evaluated) -> None:
    m = ev.meta
    queries.register_model_version(
        s,
        version=m.version,
        arch=m.arch,
        path=str(ev.bundle_dir),
        input_size=m.input_size,
        threshold=float(m.threshold),
        data_fingerprint=m.data_fingerprint,
        metrics=m.metrics,
        training=m.training,
    )


def _record(
    s: Session,
    run_id: int,
    cand: Evaluated,
    champ: Evaluated | None,
    decision: dict[str, Any],
    dataset: str,
    test_fp: str,
) -> None:
    """Registry, evaluations, promotion and the run's end: one transaction."""
    for ev in (cand, champ):
        if ev is None:
            continue
        _register(s, ev)
        queries.add_evaluation(
            s, version=ev.version, dataset=dataset, data_fingerprint=test_fp, metrics=ev.metrics
        )
    if decision["promote"]:
        queries.promote(s, cand.version, decision)
    else:
        queries.set_model_status(s, cand.version, ModelStatus.REJECTED, decision)
    queries.finish_training_run(
        s, run_id, status="succeeded", candidate_version=cand.version, decision=decision
    )


def _write_reports(
    settings: Settings,
    db: Database,
    cand: Evaluated,
    champ: Evaluated | None,
    decision: dict[str, Any],
    splits: DatasetSplits,
    test_fp: str,
) -> Path | None:
    """The candidate's page (either way) and, after a promotion, the serving model's page."""
    out, private = settings.reports.dir, settings.reports.private
    try:
        previous = PreviousModel(champ.version, champ.metrics, "champion") if champ else None
        inp = EvaluationInput(
            meta=cand.meta,
            model_source="candidate",
            dataset=str(splits.root),
            data_fingerprint=test_fp,
            metrics=cand.metrics,
            scored=scored_images(cand.metrics, splits.root),
            previous=previous,
            decision=decision,
            root=splits.root,
        )
        name = candidate_page_name(cand.version)
        page = build_evaluation_page(inp, stamp=Stamp.now(cand.version, test_fp), name=name)
        path = write_report(page, out, private=private)
        write_index(out, Stamp.now(cand.version, test_fp), private=private)
        if decision["promote"]:
            generate_reports(settings, db, ("evaluation",), reuse=True)
        return path
    except Exception:  # the decision is recorded; a report problem must not undo it
        logger.exception("writing the retraining report failed")
        return None
