"""The environment a benchmark ran in: hardware, load, library versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from ..cpuinfo import cpu_features


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def collect_env(device: str, threads: int) -> dict:
    """Everything needed to interpret the numbers; recorded in the JSON's `env`."""
    import torch

    features = cpu_features()
    env = {
        "cpu": features.model,
        "cpu_features": features.to_dict(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt",
                                              "dirac-deploy")},
        "git_sha": _git("rev-parse", "HEAD") or None,
        # Uncommitted changes to anything but earlier results (which do not change what is measured).
        "git_dirty": None if (status := _git("status", "--porcelain", "--", ":(top)",
                                             ":(top,exclude)benchmarks/results")) is None else bool(status),
        "device": device,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                      "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                      "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                      "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    return env
