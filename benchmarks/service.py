"""Measurements of the service as a user runs it: `scan` and `serve` in child processes.

Each measurement gets its own folder (inbox, output, database, config.toml) so no state leaks
between them; results are read back from the `verdicts` view.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inputs import with_comment, write_copies
from benchmarks.procs import BenchmarkError, Child, ProcResult, run_child
from benchmarks.verdicts import VerdictPoller, VerdictRow, all_verdicts

logger = logging.getLogger(__name__)

BANNER_MODEL = re.compile(r"^Model: \S+ \((\w+), (\w+)\)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Workspace:
    """One measurement's folders and config file."""

    root: Path

    @property
    def inbox(self) -> Path:
        """The watched folder."""
        return self.root / "inbox"

    @property
    def output(self) -> Path:
        """Where screened files are moved."""
        return self.root / "output"

    @property
    def db(self) -> Path:
        """The SQLite database."""
        return self.root / "var" / "verdicts.db"

    @property
    def config(self) -> Path:
        """The config.toml the children read."""
        return self.root / "config.toml"

    def log(self, name: str) -> Path:
        """Where a child's stdout+stderr go."""
        return self.root / "logs" / f"{name}.log"


def make_workspace(parent: Path, name: str, model: Path) -> Workspace:
    """A fresh folder with a config.toml: shipped defaults, but own paths and the given model."""
    ws = Workspace((parent / name).resolve())
    ws.inbox.mkdir(parents=True)
    ws.output.mkdir(parents=True)
    # json.dumps gives a valid TOML basic string for any path.
    ws.config.write_text(
        "\n".join(
            [
                "[watcher]",
                f"inbox = [{json.dumps(str(ws.inbox))}]",
                f"output = {json.dumps(str(ws.output))}",
                'on_verdict = "move"',
                "[scheduler]",
                "enabled = false",
                "[api]",
                "enabled = false",
                "[storage]",
                f"url = {json.dumps('sqlite:///' + str(ws.db))}",
                "[detector]",
                f"model = {json.dumps(str(model))}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return ws


def cli(ws: Workspace, *args: str) -> list[str]:
    """The command line of `deepfake-detector --config <ws> ARGS`."""
    return [sys.executable, "-m", "watcher", "--config", str(ws.config), *args]


def serving_backend(log: Path) -> str | None:
    """The backend `serve` reported in its banner ('litert' or 'keras')."""
    try:
        match = BANNER_MODEL.search(log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return match.group(2) if match else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), 3) if kept else None


def fixed_cpu_s(parent: Path, model: Path) -> float:
    """CPU seconds of `serve --once` over an empty inbox: imports, model load, DB, shutdown."""
    ws = make_workspace(parent, "empty-inbox", model)
    return run_child(cli(ws, "serve", "--once"), ws.log("serve-once"), 300.0).cpu_s


def summarize_screening(
    rows: list[VerdictRow], result: ProcResult, count: int, fixed_cpu: float = 0.0
) -> dict[str, Any]:
    """Throughput of one `serve --once` run: pipeline span and whole-process figures."""
    classified = sum(r.status == "classified" for r in rows)
    if len(rows) < count:
        raise BenchmarkError(f"only {len(rows)} of {count} files have a verdict")
    first_discovered = min(r.discovered_at for r in rows)
    # From the first file entering the database to the process exit (every file moved).
    pipeline_s = result.ended_wall - first_discovered
    return {
        "files": count,
        "classified": classified,
        "rejected": len(rows) - classified,
        "moved": sum(r.disposition == "moved" for r in rows),
        "images_per_s": round(count / pipeline_s, 2),
        "pipeline_s": round(pipeline_s, 3),
        "startup_s": round(first_discovered - result.started_wall, 3),
        "wall_s": round(result.wall_s, 3),
        "process_images_per_s": round(count / result.wall_s, 2),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        # Without the fixed cost of starting and stopping (measured over an empty inbox).
        "cpu_ms_per_image": round(1000 * (result.cpu_s - fixed_cpu) / count, 2),
        "cpu_s": round(result.cpu_s, 2),
        "fixed_cpu_s": round(fixed_cpu, 2),
        "mean_decode_ms": _mean([r.decode_ms for r in rows]),
        "mean_infer_ms": _mean([r.infer_ms for r in rows]),
        "mean_faces": _mean([float(r.faces) for r in rows if r.faces is not None]),
        "backend": serving_backend(result.log),
    }


def screen_inbox(
    parent: Path, name: str, variants: Sequence[bytes], count: int, model: Path, *,
    timeout_s: float, fixed_cpu: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """`serve --once` over an inbox holding `count` unique files (on_verdict = move)."""
    ws = make_workspace(parent, name, model)
    write_copies(variants, ws.inbox, count, f"{name}-")
    logger.info("%s: serve --once over %d files", name, count)
    result = run_child(cli(ws, "serve", "--once"), ws.log("serve-once"), timeout_s)
    summary = summarize_screening(all_verdicts(ws.db), result, count, fixed_cpu)
    logger.info("%s: %.1f images/s, peak RSS %.0f MB", name, summary["images_per_s"],
                summary["peak_rss_mb"])  # fmt: skip
    return summary


@dataclass(frozen=True, slots=True)
class Drop:
    """One file dropped into a running daemon and when its verdict became visible."""

    latency_s: float
    intake_s: float
    pipeline_s: float
    visible_s: float


def drop_and_wait(poller: VerdictPoller, source: Path, dest: Path, timeout_s: float) -> Drop:
    """Atomically rename `source` to `dest` and time until its row is in the view."""
    wall = time.time()
    start = time.perf_counter()
    os.rename(source, dest)
    row, seen = poller.wait_for(str(dest), timeout_s)
    latency = seen - start
    return Drop(
        latency_s=latency,
        intake_s=row.discovered_at - wall,
        pipeline_s=row.created_at - row.discovered_at,
        visible_s=latency - (row.created_at - wall),
    )


def latency_stats(drops: Sequence[Drop], how: str) -> dict[str, Any]:
    """p50/p99/max of drop-to-verdict, plus the mean of each stage (milliseconds)."""
    ms = np.array([d.latency_s for d in drops]) * 1000.0
    return {
        "drop": how,
        "drops": len(drops),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "mean_intake_ms": round(1000 * statistics.fmean(d.intake_s for d in drops), 1),
        "mean_pipeline_ms": round(1000 * statistics.fmean(d.pipeline_s for d in drops), 1),
        "mean_visible_ms": round(1000 * statistics.fmean(d.visible_s for d in drops), 1),
    }


def _drop_series(
    ws: Workspace, poller: VerdictPoller, variants: Sequence[bytes], count: int, *,
    outside: bool, gap_s: float,
) -> list[Drop]:  # fmt: skip
    """`count` drops one at a time, a pause between them (light load)."""
    staging = ws.root / "staging" if outside else ws.inbox
    staging.mkdir(exist_ok=True)
    prefix = "moved-in" if outside else "renamed"
    drops = []
    for i in range(count):
        name = f"{prefix}-{i:05d}.jpg"
        # Inside the inbox the file is written under an ignored name (*.part), then renamed.
        source = staging / (name if outside else name + ".part")
        source.write_bytes(with_comment(variants[i % len(variants)], f"drop {name}"))
        drops.append(drop_and_wait(poller, source, ws.inbox / name, timeout_s=60.0))
        time.sleep(gap_s)
    return drops


def measure_latency(
    parent: Path, variants: Sequence[bytes], model: Path, *, drops: int, move_in_drops: int,
    gap_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Drop-to-verdict latency of a running `serve`, files arriving one at a time."""
    ws = make_workspace(parent, "latency", model)
    poller = VerdictPoller(ws.db)
    with Child(cli(ws, "serve"), ws.log("serve")) as child:
        # The warm-up verdict proves the daemon is up and watching, and warms the model.
        write_copies(variants, ws.inbox, 1, "warmup-")
        poller.wait_for(str(ws.inbox / "warmup-000000.jpg"), timeout_s=180.0)
        renamed = _drop_series(ws, poller, variants, drops, outside=False, gap_s=gap_s)
        moved_in = _drop_series(ws, poller, variants, move_in_drops, outside=True, gap_s=gap_s)
        poller.close()
        result = child.stop()
    logger.info("latency: %d + %d drops done", drops, move_in_drops)
    return {
        "rename_in_inbox": latency_stats(renamed, "write NAME.jpg.part in the inbox, rename"),
        "move_in": latency_stats(moved_in, "write outside the inbox, rename into it"),
        "gap_s": gap_s,
        "daemon_peak_rss_mb": round(result.peak_rss_mb, 1),
        "backend": serving_backend(result.log),
    }


def _serve_first_verdict(ws: Workspace, variants: Sequence[bytes]) -> tuple[float, ProcResult]:
    """Seconds from starting `serve` (one file waiting in the inbox) to its visible verdict."""
    path = write_copies(variants, ws.inbox, 1, "serve-")[0]
    poller = VerdictPoller(ws.db)
    with Child(cli(ws, "serve"), ws.log("serve")) as child:
        _, seen = poller.wait_for(str(path), timeout_s=180.0)
        first_verdict_s = seen - child.started
        poller.close()
        result = child.stop()
    return first_verdict_s, result


def measure_startup(
    parent: Path, variants: Sequence[bytes], model: Path, repeats: int = 5
) -> dict[str, Any]:
    """Whole-process wall time of `scan` of one image, and `serve` start to first verdict.

    The existing-database scan is repeated and its median kept: a single process start on a
    shared machine can land on a busy second.
    """
    ws = make_workspace(parent, "startup", model)
    files = write_copies(variants, ws.root / "scan", repeats + 1, "scan-")
    # The first scan creates the database (migrations); the others find it in place.
    new_db = run_child(cli(ws, "scan", str(files[0])), ws.log("scan-new-db"), 300.0)
    runs = [
        run_child(cli(ws, "scan", str(path)), ws.log(f"scan-{i}"), 300.0)
        for i, path in enumerate(files[1:])
    ]
    if len(all_verdicts(ws.db)) != len(files):
        raise BenchmarkError("scan of one image stored no verdict")
    first_verdict_s, served = _serve_first_verdict(ws, variants)
    walls = [r.wall_s for r in runs]
    logger.info("startup: scan %s s, serve first verdict %.2f s", walls, first_verdict_s)
    return {
        "scan_one_s": round(statistics.median(walls), 3),
        "scan_one_runs_s": [round(w, 3) for w in walls],
        "scan_one_cpu_s": round(statistics.median(r.cpu_s for r in runs), 3),
        "scan_one_new_db_s": round(new_db.wall_s, 3),
        "scan_peak_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
        "serve_first_verdict_s": round(first_verdict_s, 3),
        "serve_peak_rss_mb": round(served.peak_rss_mb, 1),
    }
