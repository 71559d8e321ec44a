"""Subprocess checks of the fused SE plugin, started together so they overlap.

Some checks need a fresh interpreter: a lower ATEN_CPU_CAPABILITY (read once per
process), the C++ library hidden (the not-built error), TRITON_INTERPRET=1 (read when
triton is imported), KEISEI_FUSED_SE_POOL_LIMIT_MB (read when the op loads). Each costs
a torch import, so the first test that needs one starts all of them at once and each
test then waits for its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"

# name -> (script, arguments, extra environment)
CHECKS: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "isa-default": ("isa_check.py", ["default"], {"ATEN_CPU_CAPABILITY": "default"}),
    "isa-avx2": ("isa_check.py", ["avx2"], {"ATEN_CPU_CAPABILITY": "avx2"}),
    "not-built": ("not_built_check.py", [], {}),
    "triton-interpret": ("triton_interpret_check.py", [], {"TRITON_INTERPRET": "1"}),
    "pool-env": ("pool_env_check.py", [], {"KEISEI_FUSED_SE_POOL_LIMIT_MB": "16"}),
    "pool-env-bad": ("pool_env_bad_check.py", [], {"KEISEI_FUSED_SE_POOL_LIMIT_MB": "lots"}),
}


class Checks:
    def __init__(self) -> None:
        self._running: dict[str, subprocess.Popen[str]] = {}
        self._done: dict[str, tuple[int, str]] = {}

    def start_all(self) -> None:
        for name, (script, args, env) in CHECKS.items():
            if name in self._running or name in self._done:
                continue
            self._running[name] = subprocess.Popen(
                [sys.executable, str(SCRIPTS / script), *args],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def result(self, name: str, timeout: float = 600) -> tuple[int, str]:
        """(return code, combined output) of one check."""
        if name not in self._done:
            self.start_all()
            process = self._running.pop(name)
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
                return -9, f"timed out after {timeout}s\n{output}"
            self._done[name] = (process.returncode, output)
        return self._done[name]

    def close(self) -> None:
        for process in self._running.values():
            process.kill()
            process.communicate()
        self._running.clear()


@pytest.fixture(scope="session")
def subprocess_checks() -> Iterator[Checks]:
    checks = Checks()
    yield checks
    checks.close()
