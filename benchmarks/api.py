"""The HTTP API measured: throughput with 32 concurrent clients against `scan` of the same
pictures, and the latency of one picture on an idle service."""

from __future__ import annotations

import json
import logging
import socket
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.inputs import write_copies
from benchmarks.procs import BenchmarkError, Child, run_child
from benchmarks.service import cli, make_workspace

logger = logging.getLogger(__name__)
# One INFO line per request would bury the run's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_api(config: Path, port: int, uploads: Path) -> None:
    text = config.read_text(encoding="utf-8").replace("[api]\nenabled = false\n", "")
    text += f'[api]\nlisten = "127.0.0.1:{port}"\nupload_dir = {json.dumps(str(uploads))}\n'
    text += f"max_pending = {4 * CLIENTS}\n"
    config.write_text(text, encoding="utf-8")


def _wait_ready(base: str, child: Child, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.running:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchmarkError("the API did not come up")


def measure_api(tmp: Path, variants: Sequence[bytes], count: int, bundle: Path) -> dict[str, Any]:
    """API images/s with 32 clients, `scan` images/s on the same pictures, idle latency."""
    ws = make_workspace(tmp, "api", bundle)
    port = _free_port()
    _with_api(ws.config, port, ws.root / "uploads")
    pictures = [p.read_bytes() for p in write_copies(variants, ws.root / "pictures", count, "api-")]
    idle = [p.read_bytes() for p in write_copies(variants, ws.root / "idle", 40, "idle-")]
    base = f"http://127.0.0.1:{port}"
    with Child(cli(ws, "serve"), ws.log("serve")) as child:
        _wait_ready(base, child)
        latencies = _idle_latency(base, idle)
        started = time.perf_counter()
        with httpx.Client(timeout=120) as client, ThreadPoolExecutor(CLIENTS) as pool:
            codes = list(
                pool.map(
                    lambda data: client.post(f"{base}/v1/screen", content=data).status_code,
                    pictures,
                )
            )
        api_s = time.perf_counter() - started
        child.stop()
    if codes.count(200) != count:
        raise BenchmarkError(f"only {codes.count(200)} of {count} uploads were answered 200")
    scanned = make_workspace(tmp, "api-scan", bundle)
    folder = write_copies(variants, scanned.root / "pictures", count, "api-")[0].parent
    scan = run_child(cli(scanned, "scan", str(folder)), scanned.log("scan"), 600.0)
    result: dict[str, Any] = {
        "pictures": count,
        "clients": CLIENTS,
        "api_images_per_s": round(count / api_s, 1),
        "scan_images_per_s": round(count / scan.wall_s, 1),
        "idle_latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p99": round(sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)], 1),
        },
    }
    result["api_vs_scan"] = round(result["api_images_per_s"] / result["scan_images_per_s"], 3)
    logger.info("api: %s", result)
    return result


def _idle_latency(base: str, pictures: Sequence[bytes]) -> list[float]:
    """Milliseconds of one request at a time (distinct pictures: no verdict is reused)."""
    out = []
    with httpx.Client(timeout=60) as client:
        for data in pictures:
            started = time.perf_counter()
            answer = client.post(f"{base}/v1/screen", content=data)
            if answer.status_code != 200:
                raise BenchmarkError(f"idle request answered {answer.status_code}: {answer.text}")
            out.append(1000 * (time.perf_counter() - started))
    return out[5:]  # the first ones warm the model up
