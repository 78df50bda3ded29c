"""The machine, library versions and load, recorded with every report."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import jax
import numpy as np

import jaxconvt
from jaxconvt.bench.torch_impl import import_torch, torch_device_name


def _git_revision() -> str | None:
    """The jaxconvt checkout's commit (with "+dirty" for uncommitted changes), if it is one."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "jaxconvt"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def load_average() -> float | None:
    """The 1-minute load average (other processes competing for the cores), if known."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def load_warning(machine: dict) -> str | None:
    """A warning when the load average at start exceeds half the cores, else None.

    Other processes then compete for the cores the implementations time on, and they do not
    slow each implementation alike (PyTorch's OpenMP threads suffer most): the times and
    the ratios are not to be trusted.
    """
    load, cores = machine.get("load_avg_start"), machine.get("cpu_count")
    if load is None or not cores or load <= cores / 2:
        return None
    return (
        f"the load average at start was {load:g}, above half the {cores} cores: other processes compete "
        "for the CPU, so these times and ratios are unreliable; rerun on a quiet machine."
    )


def machine_info() -> dict:
    """Device, CPU and library versions, for the record."""
    device = jax.devices()[0]
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import jaxlib

    info = {
        "platform": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "jaxconvt": jaxconvt.__version__,
        "torch": None,
        "torch_device": None,
        "torch_threads": None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git_revision(),
        "load_avg_start": load_average(),
        "load_avg_end": None,
    }
    torch = import_torch()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_device"] = torch_device_name()
        info["torch_threads"] = torch.get_num_threads()
        if info["torch_device"] == "cuda":
            info["torch_device"] = f"cuda ({torch.cuda.get_device_name(0)})"
    return info
