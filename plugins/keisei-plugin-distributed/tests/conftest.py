"""Fixtures for the distributed plugin's tests: the faulty-rank test plugin, a host with it,
and a look at this process's descendants (no rank may outlive its launch)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from keisei_core.plugins import PluginHost

FAULTY = Path(__file__).parent / "faulty_ranks.py"


@pytest.fixture(scope="session")
def faulty_plugin() -> str:
    return str(FAULTY)


@pytest.fixture(scope="session")
def host(faulty_plugin: str) -> PluginHost:
    # Installed plugins too: this plugin's probe comes from its entry point.
    return PluginHost([faulty_plugin], env={}).load()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # zombies are gone already, their parent just has not reaped them
            parents[int(entry)] = int(fields[1])
    return parents


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def rank_processes() -> list[int]:
    """Live processes that could be ranks: multiprocessing children of this process (spawn
    children, not the forkserver or resource tracker) and the forkserver's children. Other
    children of the test session (e.g. the wandb-core service an earlier W&B test started)
    are not ranks."""
    parents = _parents()
    me = os.getpid()
    children = {pid: _cmdline(pid) for pid, parent in parents.items() if parent == me}
    forkservers = {pid for pid, cmd in children.items() if "forkserver" in cmd}
    leftovers = [pid for pid, parent in parents.items() if parent in forkservers]
    for pid, cmd in children.items():
        if "multiprocessing" in cmd and "forkserver" not in cmd and "resource_tracker" not in cmd:
            leftovers.append(pid)
    return leftovers


@pytest.fixture(scope="session")
def leftover_ranks() -> Callable[[], list[int]]:
    return rank_processes
