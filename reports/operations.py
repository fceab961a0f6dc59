"""Operations report: what the running service did, read from storage.

`collect` reads everything in one transaction into plain rows; `build_operations_page` only
renders them, so a slow chart never holds a database snapshot open.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sklearn.metrics import cohen_kappa_score
from sqlalchemy.orm import Session

from reports import charts
from reports.page import Cell, Chart, Note, Page, Section, Stamp, Table, nodata_section
from reports.stats import drift, percentiles
from reports.workers import worker_figures
from storage import queries
from storage.queries import VerdictRow

logger = logging.getLogger(__name__)

RECENT_ROWS: Final[int] = 25
LABELS: Final[tuple[str, ...]] = ("real", "ai")


@dataclass(frozen=True, slots=True)
class ModelRow:
    """A registered model version, as the report shows it."""

    version: str
    arch: str
    status: str
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None
    decision: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RunRow:
    """A training run, as the report shows it."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    error: str | None
    candidate_version: str | None
    decision: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class OperationsData:
    """Everything the operations report needs, detached from the database."""

    now: datetime
    since: datetime
    verdicts: tuple[VerdictRow, ...]
    activations: tuple[tuple[datetime, str, str, int], ...]  # when, version, host, pid
    models: tuple[ModelRow, ...]
    runs: tuple[RunRow, ...]
    labels: tuple[tuple[str, str, str | None], ...]  # sha256, human label, latest path
    screenings: tuple[tuple[str, datetime], ...] = ()  # worker id, screened_at


def collect(s: Session, *, now: datetime, days: int) -> OperationsData:
    """Read the last `days` of service history."""
    since = now - timedelta(days=days)
    models = tuple(
        ModelRow(m.version, m.arch, m.status, m.created_at, m.promoted_at, m.retired_at, m.decision)
        for m in queries.list_model_versions(s)
    )
    runs = tuple(
        RunRow(
            r.id, r.started_at, r.finished_at, r.status, r.error, r.candidate_version, r.decision
        )
        for r in queries.list_training_runs(s, limit=100)
    )
    return OperationsData(
        now=now,
        since=since,
        verdicts=tuple(queries.list_verdicts(s, since=since)),
        activations=tuple(
            (a.activated_at, version, a.host, a.pid)
            for a, version in queries.list_activations(s, limit=200)
        ),
        models=models,
        runs=runs,
        labels=tuple(queries.human_labels(s)),
        screenings=tuple(queries.screenings_by_worker(s, since)),
    )


def build_operations_page(
    data: OperationsData, *, stamp: Stamp, reference_scores: Sequence[float] | None
) -> Page:
    """The operations page (every section degrades to 'no data' on an empty database)."""
    sections = (
        _overview(data),
        _verdicts_over_time(data),
        _throughput(data),
        _daemons(data),
        _rejections(data),
        _recent(data),
        _score_drift(data, reference_scores),
        _models(data),
        _training_runs(data),
        _agreement(data),
    )
    days = (data.now - data.since).days
    return Page(
        "operations",
        "Service operations",
        stamp,
        sections,
        summary=f"The last {days} days, up to {_ts(data.now)}.",
    )


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "—"


def _inbox(d: OperationsData) -> list[VerdictRow]:
    """The service's own verdicts: files that arrived in an inbox (one-off `scan`s apart)."""
    return [v for v in d.verdicts if v.origin != "scan"]


def _serving(d: OperationsData) -> str:
    """The model the daemons last put in service (whatever its registry status), and why."""
    if d.activations:
        version = max(d.activations, key=lambda a: a[0])[1]
        status = next((m.status for m in d.models if m.version == version), "")
        return f"{version} ({status})" if status else version
    champ = next((m.version for m in d.models if m.status == "champion"), None)
    return champ or "not started yet"


def _overview(d: OperationsData) -> Section:
    inbox = _inbox(d)
    statuses = Counter(v.label or v.status for v in inbox)
    last = max((v.created_at for v in inbox if v.created_at), default=None)
    rows: tuple[tuple[Cell, ...], ...] = (
        ("files screened from the inboxes", len(inbox)),
        ("real", statuses["real"]),
        ("ai", statuses["ai"]),
        ("uncertain (in the model's band, for review)", statuses["uncertain"]),
        ("ai by provenance metadata", sum(v.decided_by == "provenance" for v in inbox)),
        ("rejected", statuses["rejected"]),
        ("one-off scans (`scan`, not counted above)", len(d.verdicts) - len(inbox)),
        ("model in service", _serving(d)),
        ("last verdict", _ts(last)),
        ("human labels", len(d.labels)),
    )
    blocks: list[Note | Table] = [Table(("", "value"), rows, f"Since {_ts(d.since)} UTC")]
    if not d.verdicts:
        blocks.insert(0, Note("No verdicts yet in this period: nothing was screened.", "warn"))
    return Section("overview", "Overview", tuple(blocks))


def _verdicts_over_time(d: OperationsData) -> Section:
    title = "Verdicts over time"
    stamped = [v for v in d.verdicts if v.created_at is not None]
    if not stamped:
        return nodata_section("verdicts-over-time", title, "no verdicts yet.")
    hourly = (d.now - min(v.created_at for v in stamped if v.created_at)) <= timedelta(days=2)
    fmt = "%m-%d %H:00" if hourly else "%Y-%m-%d"
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for v in stamped:
        assert v.created_at is not None
        counts[v.created_at.strftime(fmt)][v.label or "rejected"] += 1
    buckets = sorted(counts)
    series = {k: [counts[b][k] for b in buckets] for k in ("real", "ai", "uncertain", "rejected")}
    unit = "hour" if hourly else "day"
    chart = charts.bar_groups(
        buckets, series, title=f"Verdicts per {unit} (UTC)", ylabel="files", stacked=True
    )
    rows: tuple[tuple[Cell, ...], ...] = tuple(
        (b, *(series[k][i] for k in series)) for i, b in enumerate(buckets)
    )
    table = Table((unit, *series), rows[-48:], f"Per {unit}, latest last")
    return Section("verdicts-over-time", title, (Chart(f"Verdicts per {unit}", chart), table))


def _rates(verdicts: Sequence[VerdictRow]) -> tuple[tuple[Cell, ...], ...]:
    """Busiest minute and hour, and the mean per hour with any verdict."""
    stamps = [v.created_at for v in verdicts if v.created_at is not None]
    per_minute = Counter(t.strftime("%Y-%m-%d %H:%M") for t in stamps)
    per_hour = Counter(t.strftime("%Y-%m-%d %H") for t in stamps)
    return (
        ("busiest minute (files)", max(per_minute.values(), default=0)),
        ("busiest hour (files)", max(per_hour.values(), default=0)),
        ("mean per active hour", round(len(stamps) / max(len(per_hour), 1), 1)),
    )


def _throughput(d: OperationsData) -> Section:
    title = "Throughput and latency"
    latencies = [
        (v.created_at - v.discovered_at).total_seconds()
        for v in d.verdicts
        if v.created_at is not None and v.discovered_at is not None
    ]
    if not latencies:
        return nodata_section("throughput", title, "no screened files with timestamps yet.")
    first = Note(
        "The first batch after a daemon starts includes the model's warm-up (and, on a "
        "backlog, the wait for its turn): the high percentiles show it."
    )
    decode = [v.decode_ms for v in d.verdicts if v.decode_ms is not None]
    infer = [v.infer_ms for v in d.verdicts if v.infer_ms is not None]
    rows: list[tuple[Cell, ...]] = [
        ("drop-to-verdict latency (s)", *percentiles(latencies, (50, 90, 99, 100))),
        ("decode (ms)", *percentiles(decode, (50, 90, 99, 100))),
        ("inference (ms per file)", *percentiles(infer, (50, 90, 99, 100))),
    ]
    rates = _rates(d.verdicts)
    positive = [max(x, 1e-3) for x in latencies]
    chart = charts.histogram(
        {"latency": positive},
        title="Drop-to-verdict latency",
        xlabel="seconds",
        log_x=True,
        bins=30,
        density=False,
    )
    return Section(
        "throughput",
        title,
        (
            first,
            Table(("measure", "p50", "p90", "p99", "max"), tuple(rows), "Percentiles"),
            Table(("throughput", "value"), rates),
            Chart("Latency from discovery to verdict", chart),
        ),
    )


def _daemons(d: OperationsData) -> Section:
    title = "Per daemon"
    figures = worker_figures(d.screenings)
    if not figures:
        return nodata_section("daemons", title, "no screened file records its worker yet.")
    rows: tuple[tuple[Cell, ...], ...] = tuple(
        (f.worker, f.files, _ts(f.first_at), _ts(f.last_at), round(f.busy_s, 1), f.images_per_s)
        for f in figures
    )
    cols = ("worker", "files", "first (UTC)", "last (UTC)", "busy (s)", "images/s")
    note = Note(
        "Each file counts for the daemon ([watcher] worker_id) that held its claim when it was "
        "screened; busy time leaves out pauses over 10 s between its batches."
    )
    return Section("daemons", title, (note, Table(cols, rows)))


def _rejections(d: OperationsData) -> Section:
    title = "Rejected files by reason"
    rejected = [v for v in d.verdicts if v.status == "rejected"]
    if not rejected:
        return nodata_section("rejections", title, "no file was rejected in this period.")
    by_code: dict[str, list[VerdictRow]] = defaultdict(list)
    for v in rejected:
        by_code[v.reason_code or "unknown"].append(v)
    rows = tuple(
        (code, len(items), items[0].reason or "", ", ".join(_base(v.path) for v in items[:3]))
        for code, items in sorted(by_code.items(), key=lambda kv: -len(kv[1]))
    )
    chart = charts.bar_groups(
        [r[0] for r in rows],
        {"rejected": [r[1] for r in rows]},
        title="Rejections",
        ylabel="files",
    )
    return Section(
        "rejections",
        title,
        (
            Table(("reason code", "files", "example reason", "example files"), rows),
            Chart("Rejected files per reason", chart),
        ),
    )


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _recent(d: OperationsData) -> Section:
    title = "Most recent verdicts"
    if not d.verdicts:
        return nodata_section("recent", title, "no verdicts yet.")
    rows = tuple(
        (
            _ts(v.created_at),
            v.path,
            v.origin,
            v.label or "rejected",
            v.score,
            v.model_version,
            v.reason or "",
            v.disposition,
            v.dest_path,
        )
        for v in d.verdicts[:RECENT_ROWS]
    )
    cols = (
        "screened (UTC)",
        "file",
        "origin",
        "verdict",
        "P(ai)",
        "model",
        "reason",
        "disposition",
        "now at",
    )
    return Section("recent", title, (Table(cols, rows),))


def _score_drift(d: OperationsData, reference: Sequence[float] | None) -> Section:
    title = "Score distribution: inbox vs evaluation data"
    recent = [v.score for v in d.verdicts if v.status == "classified" and v.score is not None]
    if not recent:
        return nodata_section("score-drift", title, "no classified inbox images in this period.")
    if not reference:
        reason = (
            "no evaluation scores of the serving model are stored: set [reports] data to a "
            "labelled folder, then run `report evaluation`."
        )
        return nodata_section("score-drift", title, reason)
    result = drift(recent, reference)
    rows: tuple[tuple[Cell, ...], ...] = (
        ("inbox scores", result.n_recent),
        ("evaluation scores", result.n_reference),
        ("KS statistic", result.ks_statistic),
        ("KS p-value", result.ks_p),
        ("PSI (reference deciles)", result.psi),
        ("reading", result.verdict),
    )
    chart = charts.histogram(
        {"inbox": recent, "evaluation": list(reference)},
        title="P(ai) distribution",
        xlabel="P(ai)",
        bins=[i / 20 for i in range(21)],
    )
    level = "good" if result.verdict == "stable" else "warn"
    note = Note(
        f"PSI {result.psi:.3f}: {result.verdict} (below 0.1 stable, above 0.25 a major shift). "
        "A shift means the inbox differs from the data the model was evaluated on.",
        level,
    )
    return Section("score-drift", title, (note, Table(("", "value"), rows), Chart(title, chart)))


def _models(d: OperationsData) -> Section:
    title = "Model versions in service"
    if not d.models and not d.activations:
        return nodata_section("models", title, "no model version is registered yet.")
    model_rows = tuple(
        (
            m.version,
            m.arch,
            m.status,
            _ts(m.created_at),
            _ts(m.promoted_at),
            _ts(m.retired_at),
            _reasons(m.decision),
        )
        for m in d.models
    )
    act_rows = tuple((_ts(when), v, host, pid) for when, v, host, pid in d.activations)
    blocks: list[Table | Note] = [
        Table(
            ("version", "arch", "status", "registered", "promoted", "retired", "decision"),
            model_rows,
            "Registry",
        ),
    ]
    if act_rows:
        blocks.append(
            Table(
                ("activated (UTC)", "version", "host", "pid"),
                act_rows,
                "Activations: when a process started serving a version",
            )
        )
    else:
        blocks.append(Note("No activation recorded yet (the daemon records one per load)."))
    return Section("models", title, tuple(blocks))


def _reasons(decision: dict[str, Any] | None) -> str:
    if not decision:
        return ""
    verdict = "promote" if decision.get("promote") else "keep champion"
    reasons = decision.get("reasons") or []
    return f"{verdict}: " + "; ".join(str(r) for r in reasons) if reasons else verdict


def _training_runs(d: OperationsData) -> Section:
    title = "Training runs"
    if not d.runs:
        return nodata_section("training-runs", title, "no training run yet.")
    rows = tuple(
        (
            r.id,
            _ts(r.started_at),
            _ts(r.finished_at),
            _duration(r),
            r.status,
            r.candidate_version,
            _reasons(r.decision),
            r.error,
        )
        for r in d.runs
    )
    cols = ("run", "started", "finished", "duration", "status", "candidate", "decision", "error")
    failed = sum(r.status == "failed" for r in d.runs)
    blocks: list[Note | Table] = [Table(cols, rows)]
    if failed:
        blocks.insert(
            0, Note(f"{failed} of {len(d.runs)} runs failed; see the error column.", "warn")
        )
    return Section("training-runs", title, tuple(blocks))


def _duration(r: RunRow) -> str:
    if r.finished_at is None:
        return "running"
    return str(timedelta(seconds=round((r.finished_at - r.started_at).total_seconds())))


def _kappa_and_matrix(
    human: list[str], model: list[str]
) -> tuple[float, tuple[tuple[Cell, ...], ...]]:
    """Cohen's kappa (NaN when only one label occurs) and the human x model count table."""
    one_label = len(set(human + model)) < 2
    kappa = float("nan") if one_label else cohen_kappa_score(human, model, labels=list(LABELS))
    pairs = list(zip(human, model, strict=True))
    matrix: tuple[tuple[Cell, ...], ...] = tuple(
        (f"human: {h}", *(sum(p == (h, m) for p in pairs) for m in LABELS)) for h in LABELS
    )
    return float(kappa), matrix


def _agreement(d: OperationsData) -> Section:
    title = "Agreement with human labels"
    if not d.labels:
        return nodata_section("agreement", title, "no human label yet (`deepfake-detector label`).")
    latest: dict[str, VerdictRow] = {}
    for v in reversed(d.verdicts):  # oldest first, so the newest verdict wins
        if v.sha256 and v.label:
            latest[v.sha256] = v
    pairs = [(human, latest[sha], path) for sha, human, path in d.labels if sha in latest]
    if not pairs:
        reason = f"{len(d.labels)} labels, none for an image classified in this period."
        return nodata_section("agreement", title, reason)
    human = [h for h, _, _ in pairs]
    model = [str(v.label) for _, v, _ in pairs]
    agree = sum(h == m for h, m in zip(human, model, strict=True))
    kappa, matrix = _kappa_and_matrix(human, model)
    wrong = tuple(
        (path or v.path, h, v.label, v.score, v.model_version)
        for h, v, path in pairs
        if h != v.label
    )
    blocks: list[Note | Table] = [
        Note(
            f"{agree} of {len(pairs)} labelled images agree ({agree / len(pairs):.1%}); "
            f"Cohen's kappa {kappa:.3f}."
        ),
        Table(("", "model: real", "model: ai"), matrix, "Human label vs model verdict"),
    ]
    if wrong:
        blocks.append(
            Table(("file", "human", "model", "P(ai)", "model version"), wrong[:50], "Disagreements")
        )
    return Section("agreement", title, tuple(blocks))
