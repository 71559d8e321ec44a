"""The environment manifest stored with every results file and tuning decision: what
produced these numbers (CPU, threads, load, versions, git commit, plugins).

Below the compile and bench layers, which both record it; no torch at import time."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class PluginHost(Protocol):
    """What the manifest reads of a plugin host (its load records); structural, so this
    module needs nothing of the plugin layer."""

    @property
    def records(self) -> Sequence[Any]: ...


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: other work competing for the cores skews timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def git_commit(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """HEAD of the git checkout containing ``cwd`` (None outside one), and whether it is dirty."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(status.strip())} if head else None


def plugin_entries(host: PluginHost) -> list[dict[str, Any]]:
    """Every plugin the host knows: name, source, distribution and version, status, registrations."""
    from importlib import metadata

    from keisei_core import __version__

    entries = []
    for record in host.records:
        version = record.version
        if version is None and record.source == "builtin":
            version = __version__
        if version is None and record.distribution:
            try:
                version = metadata.version(record.distribution)
            except metadata.PackageNotFoundError:
                version = None
        entries.append(
            {
                "name": record.name,
                "source": record.source,
                "target": record.target,
                "distribution": record.distribution,
                "version": version,
                "status": record.status,
                "error": record.error,
                "registered": {k: list(v) for k, v in record.registered.items()},
            }
        )
    return entries


def environment_manifest(host: PluginHost | None, *, threads: int, device: str) -> dict[str, Any]:
    """Versions, hardware, thread count, loaded plugins and git state of this run."""
    import torch

    from keisei_core import __version__

    manifest: dict[str, Any] = {
        "keisei_core": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "device": device,
        "gpu": None,
        "executable": sys.executable,
        "git": git_commit(Path(__file__).resolve().parent),
        "load_average_at_start": load_average(),
        "plugins": plugin_entries(host) if host is not None else [],
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        manifest["gpu"] = {
            "name": props.name,
            "memory_bytes": int(props.total_memory),
            "capability": f"{props.major}.{props.minor}",
            "count": torch.cuda.device_count(),
        }
    return manifest
