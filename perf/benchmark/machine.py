"""What the figures were measured on: CPU, cores, memory, GPU (if any), OS and software versions."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from typing import Dict, Optional

PACKAGES = ("sam-triton", "onnxruntime", "torch", "segment-anything", "nvidia-pytriton", "tritonclient", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpus() -> str:
    if not shutil.which("nvidia-smi"):
        return "none (no nvidia-smi)"
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi failed)"
    return "; ".join(done.stdout.strip().splitlines()) or "none (nvidia-smi lists no GPU)"


def _versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was (others' work included)."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info(load_at_start: str = "") -> Dict[str, object]:
    """A flat description of this machine and the software the benchmark ran with."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "gpu": _gpus(),
        "load_average_at_start": load_at_start or "not recorded",
        "load_average_at_end": load_average(),
        "os": platform.platform(),
        "glibc": " ".join(platform.libc_ver()),
        "python_executable": sys.executable,
        "versions": _versions(),
    }
