"""`python -m benchmarks.run`: measure the screening service on this machine, print, save JSON.

Every measurement runs in one go on one machine so ratios (end-to-end vs model-only, vs the
notebook's per-file way) compare like with like. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import api, models, report, service
from benchmarks.inputs import (
    encode_variant,
    heic_photos,
    photo_variant,
    source_images,
    write_copies,
)
from benchmarks.machine import describe_machine, load_average, machine_line
from benchmarks.procs import REPO
from benchmarks.report import PHONE, PHONE_HEIC
from detector.bundle import TFLITE_FILE
from detector.config import DetectorConfig

logger = logging.getLogger(__name__)

SECTIONS = (
    "startup", "latency", "end_to_end", "backlog", "model_only", "reference", "training", "api",
)  # fmt: skip
DEFAULT_OUT = REPO / "benchmarks" / "results" / "latest.json"
UNIQUENESS = (
    "each copy carries its own JPEG COM segment (HEIC: a trailing free box): identical pixels, "
    "distinct sha256"
)


@dataclass(frozen=True, slots=True)
class Params:
    """How much work each measurement does."""

    sources: int
    e2e_files: int
    backlog: int
    backlog_small: int
    drops: int
    move_in_drops: int
    drop_gap_s: float
    reference_files: int
    model_min_s: float
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64)
    # Phone photos (4032 x 3024, JPEG and HEIC): files per run and distinct pictures (HEIC
    # encoding is slow, and a 12 MP copy is 2-5 MB).
    phone_files: int = 200
    phone_variants: int = 8
    phone_size: tuple[int, int] = (4032, 3024)


QUICK = Params(sources=8, e2e_files=20, backlog=50, backlog_small=20, drops=5, move_in_drops=2,
               drop_gap_s=0.05, reference_files=10, model_min_s=0.2, phone_files=6,
               phone_variants=2, phone_size=(1008, 756))  # fmt: skip


def full_params(backlog: int) -> Params:
    """The real run: 10,000-file backlog (and one fifth of it to show RSS does not grow)."""
    return Params(sources=64, e2e_files=1000, backlog=backlog, backlog_small=max(backlog // 5, 1),
                  drops=100, move_in_drops=20, drop_gap_s=0.25, reference_files=200,
                  model_min_s=3.0)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Context:
    """What every measurement needs."""

    tmp: Path
    info: models.ModelInfo
    params: Params
    v256: list[bytes]
    v1024: list[bytes]
    # Group photos, 2048 x 1536 px, three faces each: the "1024-2048 px photos" case.
    v2048: list[bytes]
    # Phone photos, 4032 x 3024 px (params.phone_size), three faces each, JPEG and HEIC.
    phone_jpeg: list[bytes]
    phone_heic: list[bytes]


def _serve_timeout(count: int) -> float:
    return 180.0 + count / 10.0


def _end_to_end(ctx: Context) -> dict[str, Any]:
    n, phones, bundle = ctx.params.e2e_files, ctx.params.phone_files, ctx.info.bundle
    fixed = service.fixed_cpu_s(ctx.tmp / "e2e", bundle)
    runs = [
        ("256", ctx.v256, n),
        ("1024", ctx.v1024, n),
        ("2048", ctx.v2048, n),
        (PHONE, ctx.phone_jpeg, phones),
        (PHONE_HEIC, ctx.phone_heic, phones),
    ]
    return {
        key: service.screen_inbox(ctx.tmp, f"e2e-{key}", v, count, bundle,
                                  timeout_s=_serve_timeout(count), fixed_cpu=fixed)
        for key, v, count in runs
    }  # fmt: skip


def _backlog(ctx: Context) -> dict[str, Any]:
    fixed = service.fixed_cpu_s(ctx.tmp / "backlog", ctx.info.bundle)
    return {
        str(n): service.screen_inbox(ctx.tmp, f"backlog-{n}", ctx.v256, n, ctx.info.bundle,
                                     timeout_s=_serve_timeout(n), fixed_cpu=fixed)
        for n in (ctx.params.backlog_small, ctx.params.backlog)
    }  # fmt: skip


def _latency(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    return service.measure_latency(ctx.tmp, ctx.v256, ctx.info.bundle, drops=p.drops,
                                   move_in_drops=p.move_in_drops, gap_s=p.drop_gap_s)  # fmt: skip


def _reference(ctx: Context) -> dict[str, Any]:
    out = {}
    for size, variants in ((256, ctx.v256), (1024, ctx.v1024)):
        files = write_copies(variants, ctx.tmp / f"reference-{size}", ctx.params.reference_files,
                             "ref-")  # fmt: skip
        out[str(size)] = models.reference_per_file(ctx.info, files)
        logger.info("reference %d px: %s", size, out[str(size)])
    return out


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "startup": lambda ctx: service.measure_startup(ctx.tmp, ctx.v256, ctx.info.bundle),
    "latency": _latency,
    "end_to_end": _end_to_end,
    "backlog": _backlog,
    "model_only": lambda ctx: models.model_only(
        ctx.info, ctx.v256, ctx.params.batch_sizes, ctx.params.model_min_s
    ),
    "reference": _reference,
    "training": lambda ctx: models.training_cost(ctx.info),
    "api": lambda ctx: api.measure_api(ctx.tmp, ctx.v256, ctx.params.e2e_files, ctx.info.bundle),
}


def prepare(tmp: Path, args: argparse.Namespace, params: Params) -> tuple[Context, dict[str, Any]]:
    """Model bundle and input images; the run's header (machine, model, inputs, params)."""
    info = models.resolve_model(args.model, tmp)
    images, origin = source_images(params.sources)
    phones, phone = range(params.phone_variants), params.phone_size
    ctx = Context(tmp, info, params, [encode_variant(i, 256) for i in images],
                  [encode_variant(i, 1024) for i in images],
                  [photo_variant(images, k, (2048, 1536)) for k in range(len(images))],
                  [photo_variant(images, k, phone) for k in phones],
                  heic_photos(images, params.phone_variants, phone))  # fmt: skip
    header = {
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *args.argv]),
        "quick": args.quick,
        "machine": describe_machine(),
        "load_average": {"start": load_average()},
        "model": {**info.to_dict(), "backend": _expected_backend(info)},
        "inputs": {
            "images": origin,
            "distinct_images": len(images),
            "sizes_px": [256, 1024, 2048, list(params.phone_size)],
            "jpeg_quality": 90,
            "uniqueness": UNIQUENESS,
        },
        "params": {**asdict(params), "serve_batch_size": DetectorConfig().batch_size},
        "errors": {},
    }
    return ctx, header


def _expected_backend(info: models.ModelInfo) -> str:
    # backend = "auto" on a CPU machine serves LiteRT whenever the bundle has a .tflite.
    return "litert" if (info.bundle / TFLITE_FILE).is_file() else "keras"


def run_sections(ctx: Context, results: dict[str, Any], sections: Sequence[str]) -> None:
    """Run each selected measurement; a failing one is recorded and the rest still run."""
    for name in sections:
        logger.info("=== %s ===", name)
        results["load_average"][name] = load_average()
        started = time.perf_counter()
        try:
            results[name] = RUNNERS[name](ctx)
        except Exception as exc:  # one broken measurement must not lose the others
            logger.exception("measurement %s failed", name)
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
        logger.info("%s took %.1f s", name, time.perf_counter() - started)
    results["load_average"]["end"] = load_average()


def render(results: dict[str, Any]) -> str:
    """The printed report: machine, model, targets, then the detail tables."""
    model = results["model"]
    loads = results["load_average"]
    parts = [
        f"Machine: {machine_line(results['machine'])}",
        f"Load average (1/5/15 min) at start {loads['start']}, at end {loads.get('end')}",
        f"Model: {model['version']} ({model['arch']}, {model['input_size']} px, "
        f"{model['source']}), serving backend {model['backend']}",
        f"Inputs: {results['inputs']['images']}; {results['inputs']['uniqueness']}",
        "",
        report.targets_table([report.Target(**t) for t in results["targets"]]),
    ]
    if "model_only" in results:
        parts += ["", report.model_table(results["model_only"])]
    if "end_to_end" in results or "backlog" in results:
        parts += ["", report.screening_table(results)]
    parts += ["", *report.detail_lines(results)]
    if results["errors"]:
        parts += ["", *(f"FAILED {k}: {v}" for k, v in results["errors"].items())]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny inputs, well under a minute")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--model", type=Path, help="bundle folder (default: detector/bundled)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument("--backlog", type=int, default=10_000, help="files in the big backlog")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown measurement(s) {unknown}; choose from {','.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in chosen]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when every measurement was made (targets may still miss)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    params = QUICK if args.quick else full_params(args.backlog)
    with tempfile.TemporaryDirectory(prefix="dfd-bench-") as tmp:
        ctx, results = prepare(Path(tmp), args, params)
        run_sections(ctx, results, args.sections)
    results["targets"] = [t.to_dict() for t in report.evaluate(results)]
    report.write_json(results, args.out)
    print(render(results))
    logger.info("results written to %s", args.out)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
