"""The memory probe's child measures its own peak, not the peak of the process that started it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited ru_maxrss is a Linux kernel behaviour")
def test_child_peak_is_not_inherited_from_a_large_parent() -> None:
    ballast = bytearray(600 * 1024 * 1024)  # make this (parent) process's peak large
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page so it is resident
    code = "from keisei_core.bench.child import peak_rss_bytes; print(peak_rss_bytes())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    del ballast
    child_peak_mib = int(done.stdout) / 2**20
    # A bare interpreter importing the child module needs tens of MiB, never 600.
    assert child_peak_mib < 300, child_peak_mib
