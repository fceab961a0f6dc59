"""What machine a run measured: every absolute figure is only meaningful next to this."""

from __future__ import annotations

import logging
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "numpy", "pillow", "sqlalchemy")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The SIMD extensions that decide how fast TensorFlow/LiteRT kernels can be."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def _ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def usable_cpus() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (other developers share this machine)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and the versions of the packages that set the speed."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cpus": os.cpu_count() or 1,
        "usable_cpus": usable_cpus(),
        "ram_gb": _ram_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
    }


def machine_line(machine: dict[str, Any]) -> str:
    """One-line summary for the table header."""
    pkgs = machine.get("packages", {})
    return (
        f"{machine['cpu_model']} ({machine['usable_cpus']} usable of "
        f"{machine['logical_cpus']} CPUs, {'/'.join(machine['cpu_flags']) or 'no AVX'}), "
        f"{machine['ram_gb']} GB RAM, {machine['os']}, Python {machine['python']}, "
        f"TF {pkgs.get('tensorflow')}, Keras {pkgs.get('keras')}, "
        f"LiteRT {pkgs.get('ai-edge-litert')}"
    )
