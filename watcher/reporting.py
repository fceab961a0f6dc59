"""Writing the HTML reports: a service of the daemon, which the `report` command calls too.

This is where the packages meet: `training` loads the data and computes the metrics (its
`evaluate` is the one metrics implementation), `storage` keeps them, `reports` draws them.
`generate_reports` is shared by the command, the scheduler's job and retraining.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy.orm import Session

from detector.bundle import ModelMeta, read_meta
from reports import edacache
from reports.eda import build_eda_page, compute_facts
from reports.edacache import cache_path
from reports.evaluation import EvaluationInput, build_evaluation_page
from reports.operations import build_operations_page, collect
from reports.page import Note, Stamp, write_atomic
from reports.recorded import (
    RecordedEvaluation,
    how_to_point_at_data,
    recorded_evaluation,
    recorded_training_data,
)
from reports.review import MAX_CARDS, build_review_page
from reports.site import write_index, write_report
from storage import queries
from storage.db import Database
from storage.models import utcnow
from training.datasets import DatasetError, DatasetSplits, fingerprint, load_layout
from watcher import invocation, terminal
from watcher.models_watch import ModelChoice, resolve_model
from watcher.settings import Settings
from watcher.stored_evaluations import (
    PER_IMAGE,
    evaluate_bundle,
    previous_champion,
    recorded_previous,
    scored_images,
    stored_metrics,
    test_dataset_name,
)

logger = logging.getLogger(__name__)

ALL_KINDS: Final[tuple[str, ...]] = ("evaluation", "eda", "operations", "review")
STATE_FILE: Final[str] = ".state.json"
CACHE_DIR: Final[str] = ".cache"  # inside [reports] dir: computed facts by data fingerprint
NO_DATA_NOR_RECORD: Final[str] = (
    "no evaluation data is configured ([reports] data), and the model's model.json records "
    "no test evaluation."
)


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Which files were written and which reports failed (kind -> error)."""

    written: tuple[Path, ...]
    failed: dict[str, str]


def generate_reports(
    settings: Settings,
    db: Database,
    kinds: Sequence[str],
    *,
    reuse: bool = False,
    progress: terminal.Bar | None = None,
) -> ReportResult:
    """Write the given reports and index.html; `reuse` skips recomputing unchanged results;
    `progress` is advanced once per report."""
    ctx = _Context(settings, db)
    written: list[Path] = []
    failed: dict[str, str] = {}
    builders = {
        "evaluation": _evaluation,
        "eda": _eda,
        "operations": _operations,
        "review": _review,
    }
    for kind in kinds:
        if progress is not None:
            progress.update(text=f"writing the {kind} report")
        try:
            written.append(builders[kind](ctx, reuse))
        except Exception as exc:  # one broken report must not stop the others
            logger.exception("the %s report failed", kind)
            failed[kind] = f"{type(exc).__name__}: {exc}"
        if progress is not None:
            progress.advance()
    stamp = Stamp.now(ctx.version(), ctx.data_fingerprint)
    written.append(write_index(settings.reports.dir, stamp, private=settings.reports.private))
    return ReportResult(tuple(written), failed)


class _Context:
    """Lazily resolved inputs shared by the reports of one run."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.model_version = ""
        self.data_fingerprint = ""
        self._splits: DatasetSplits | None = None
        self._data_problem: str | None = None

    @property
    def out_dir(self) -> Path:
        return self.settings.reports.dir

    @property
    def private(self) -> bool:
        return self.settings.reports.private

    def splits(self) -> tuple[DatasetSplits | None, str]:
        """The report data, or None and why not."""
        if self._splits is None and self._data_problem is None:
            self._splits, self._data_problem = load_report_data(self.settings)
        return self._splits, self._data_problem or ""

    def version(self) -> str:
        """The serving model's version ("" when it cannot be read)."""
        if not self.model_version:
            self.model()
        return self.model_version

    def model(self) -> tuple[ModelChoice, ModelMeta | None, str]:
        """The serving bundle, its metadata (None if unreadable) and the problem, if any."""
        choice = resolve_model(self.settings, self.db)
        try:
            meta = read_meta(choice.bundle_dir)
        except (OSError, ValueError) as exc:
            return choice, None, f"cannot read the model at {choice.bundle_dir}: {exc}"
        self.model_version = meta.version
        return choice, meta, ""


def load_report_data(settings: Settings) -> tuple[DatasetSplits | None, str | None]:
    """[reports] data as dataset splits; (None, reason) when unset or unusable."""
    root = settings.reports.data
    if root is None:
        return None, "no evaluation data is configured ([reports] data)."
    try:
        splits = load_layout(
            root,
            real_dir=settings.training.real_dir,
            ai_dir=settings.training.ai_dir,
            seed=settings.training.seed,
        )
    except DatasetError as exc:
        logger.warning("report data unusable: %s", exc)
        return None, f"the configured data cannot be read: {exc}"
    return splits, None


# --- evaluation ---------------------------------------------------------------------------


def _evaluation(ctx: _Context, reuse: bool) -> Path:
    choice, meta, problem = ctx.model()
    splits, data_problem = ctx.splits()
    stamp_version = meta.version if meta else ""
    if meta is not None and splits is None and ctx.settings.reports.data is None:
        recorded = recorded_evaluation(meta)
        if recorded is not None:
            return _recorded_evaluation(ctx, choice.source, meta, recorded)
        data_problem = NO_DATA_NOR_RECORD
    if meta is None or splits is None or not splits.test:
        why = problem or data_problem or "the configured data has no test split."
        inp = EvaluationInput(
            meta, choice.source, str(getattr(splits, "root", "")), "", None, problem=why
        )
        page = build_evaluation_page(inp, stamp=Stamp.now(stamp_version, ""))
        return write_report(page, ctx.out_dir, private=ctx.private)
    fp = fingerprint(splits.test)
    ctx.data_fingerprint = ctx.data_fingerprint or fp
    dataset = test_dataset_name(splits)
    metrics = stored_metrics(ctx.db, meta.version, dataset, fp) if reuse else None
    if metrics is None:
        metrics = evaluate_bundle(ctx.settings, ctx.db, choice.bundle_dir, meta, splits)
    inp = EvaluationInput(
        meta=meta,
        model_source=choice.source,
        dataset=str(splits.root),
        data_fingerprint=fp,
        metrics=metrics,
        scored=scored_images(metrics, splits.root),
        previous=previous_champion(ctx.db, meta.version, dataset, fp),
        root=splits.root,
    )
    page = build_evaluation_page(inp, stamp=Stamp.now(meta.version, fp))
    return write_report(page, ctx.out_dir, private=ctx.private)


def _recorded_evaluation(
    ctx: _Context, source: str, meta: ModelMeta, recorded: RecordedEvaluation
) -> Path:
    """The evaluation page from the figures model.json recorded at training."""
    fp = recorded.data_fingerprint
    ctx.data_fingerprint = ctx.data_fingerprint or fp
    inp = EvaluationInput(
        meta=meta,
        model_source=source,
        dataset=recorded.dataset,
        data_fingerprint=fp,
        metrics=recorded.metrics,
        previous=recorded_previous(ctx.db, meta.version),
        recorded=recorded,
    )
    page = build_evaluation_page(inp, stamp=Stamp.now(meta.version, fp))
    return write_report(page, ctx.out_dir, private=ctx.private)


# --- eda and operations -------------------------------------------------------------------


def _eda(ctx: _Context, reuse: bool) -> Path:
    splits, problem, notes = _eda_data(ctx)
    out = ctx.out_dir / "eda.html"
    if splits is None:
        page = build_eda_page(
            [], stamp=Stamp.now(ctx.version()), sample_size=0, empty_reason=problem
        )
        return write_report(page, ctx.out_dir, private=ctx.private)
    samples = splits.all()
    fp = fingerprint(samples)
    ctx.data_fingerprint = ctx.data_fingerprint or fp
    state = _read_state(ctx.out_dir)
    size, seed = ctx.settings.reports.eda_sample, ctx.settings.training.seed
    key = f"{fp}:{size}"
    if reuse and out.is_file() and state.get("eda") == key:
        logger.info("EDA report unchanged (same data); kept %s", out)
        return out
    cached = cache_path(ctx.out_dir / CACHE_DIR, fp, size, seed)
    computed = edacache.load(cached, samples)
    if computed is None:
        computed = compute_facts(samples, size, seed)
        edacache.save(computed, cached, private=ctx.private)
    else:
        logger.info("EDA facts reused from %s", cached)
    _, meta, _ = ctx.model()
    if meta is not None and meta.data_fingerprint and ctx.settings.reports.data is None:
        same = meta.data_fingerprint == fp
        notes.append(
            Note(
                "The files on disk are exactly the data the model was trained on (same "
                "fingerprint)."
                if same
                else f"The files on disk differ from the data the model was trained on "
                f"(fingerprint {fp[:12]} here, {meta.data_fingerprint[:12]} recorded).",
                "good" if same else "warn",
            )
        )
    page = build_eda_page(
        samples,
        stamp=Stamp.now(ctx.version(), fp),
        sample_size=size,
        root=splits.root,
        seed=seed,
        computed=computed,
        notes=notes,
    )
    path = write_report(page, ctx.out_dir, private=ctx.private)
    _write_state(ctx.out_dir, {**state, "eda": key}, private=ctx.private)
    return path


def _eda_data(ctx: _Context) -> tuple[DatasetSplits | None, str, list[Note]]:
    """[reports] data, else the serving model's recorded training data when it is on disk."""
    if ctx.settings.reports.data is not None:
        splits, problem = ctx.splits()
        return splits, problem, []
    _, meta, problem = ctx.model()
    if meta is None:
        return None, problem or how_to_point_at_data(), []
    # Training records paths as given on its command line, relative to where it ran: the
    # project folder, which is where config.toml lives (or the working folder without one).
    splits, reason, notes = recorded_training_data(
        meta,
        [ctx.settings.base_dir],
        real_dir=ctx.settings.training.real_dir,
        ai_dir=ctx.settings.training.ai_dir,
        seed=ctx.settings.training.seed,
    )
    return splits, reason, [Note(n) for n in notes]


def _operations(ctx: _Context, reuse: bool) -> Path:
    del reuse  # service history changes all the time: always rebuilt
    _, meta, _ = ctx.model()
    now = utcnow()
    with ctx.db.session() as s:
        data = collect(s, now=now, days=ctx.settings.reports.operations_days)
        reference = _reference_scores(s, meta.version if meta else None)
    stamp = Stamp.now(meta.version if meta else "", ctx.data_fingerprint)
    page = build_operations_page(data, stamp=stamp, reference_scores=reference)
    return write_report(page, ctx.out_dir, private=ctx.private)


def _review(ctx: _Context, reuse: bool) -> Path:
    del reuse  # new pictures arrive all the time: always rebuilt
    count = max(0, min(ctx.settings.reports.review_count, MAX_CARDS))
    with ctx.db.session() as s:
        items = queries.recent_for_review(s, limit=count)
    stamp = Stamp.now(ctx.version(), ctx.data_fingerprint)
    command = invocation.command(ctx.settings.source)
    page = build_review_page(items, stamp=stamp, count=count, command=command)
    return write_report(page, ctx.out_dir, private=ctx.private)


def _reference_scores(s: Session, version: str | None) -> list[float] | None:
    """Scores of the serving model on its latest stored evaluation (the drift reference)."""
    if version is None:
        return None
    row = queries.latest_evaluation(s, version)
    scores = ((row.metrics if row else {}).get(PER_IMAGE) or {}).get("scores")
    return [float(x) for x in scores] if scores else None


def _read_state(out_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(out_dir: Path, state: dict[str, Any], *, private: bool) -> None:
    write_atomic(out_dir / STATE_FILE, json.dumps(state, sort_keys=True), private=private)
