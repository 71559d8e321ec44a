"""Fixtures for the core's tests: real throwaway plugin distributions installed with pip."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _write_distribution(root: Path, dist: str, module: str, entry: str, body: str) -> Path:
    folder = root / dist
    (folder / module).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.2.3"
            dependencies = []

            [project.entry-points.keisei]
            {entry} = "{module}"

            [tool.setuptools]
            packages = ["{module}"]
            """
        )
    )
    (folder / module / "__init__.py").write_text(textwrap.dedent(body))
    return folder


GOOD_PLUGIN = """
    import attrs
    from keisei_core import hookimpl, ModelSpec

    @attrs.frozen
    class TinyOptions:
        input_channels: int = 46
        board_size: int = 9
        num_actions: int = 13527
        hidden: int = attrs.field(default=8, validator=attrs.validators.ge(1))

    def build(options):
        from keisei_demo_plugin.net import Tiny
        return Tiny(options)

    @hookimpl
    def keisei_register_models(register):
        register(ModelSpec(name="demo-net", build=build, options=TinyOptions,
                           description="a tiny demo network from a pip-installed plugin"))
"""

GOOD_PLUGIN_NET = """
    import torch
    from torch import nn
    from keisei_core import ActorCriticMixin

    class Tiny(ActorCriticMixin, nn.Module):
        def __init__(self, options):
            super().__init__()
            flat = options.input_channels * options.board_size ** 2
            self.body = nn.Linear(flat, options.hidden)
            self.policy = nn.Linear(options.hidden, options.num_actions)
            self.value = nn.Linear(options.hidden, 1)

        def forward(self, obs):
            h = torch.relu(self.body(obs.flatten(1)))
            return self.policy(h), self.value(h).squeeze(-1)
"""

BROKEN_PLUGIN = """
    raise RuntimeError("this plugin is broken on purpose")
"""

DUPLICATE_PLUGIN = """
    from keisei_core import hookimpl, ModelSpec

    def build(options):
        raise AssertionError("never built")

    @hookimpl
    def keisei_register_models(register):
        register(ModelSpec(name="dup-only-model", build=build))
        register(ModelSpec(name="actor-critic", build=build))
"""


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three real distributions pip-installed into a private target directory.

    Installing with ``--target`` keeps the test venv clean; the directory is put on
    sys.path (and PYTHONPATH for subprocesses) so importlib.metadata finds the entry points.
    """
    src = tmp_path_factory.mktemp("plugin-src")
    target = tmp_path_factory.mktemp("plugin-site")
    good = _write_distribution(src, "keisei-demo-plugin", "keisei_demo_plugin", "demo", GOOD_PLUGIN)
    (good / "keisei_demo_plugin" / "net.py").write_text(textwrap.dedent(GOOD_PLUGIN_NET))
    broken = _write_distribution(src, "keisei-broken-plugin", "keisei_broken_plugin", "broken", BROKEN_PLUGIN)
    dup = _write_distribution(src, "keisei-dup-plugin", "keisei_dup_plugin", "dup", DUPLICATE_PLUGIN)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(good), str(broken), str(dup)],
        check=True,
    )
    sys.path.insert(0, str(target))
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in ("keisei_demo_plugin", "keisei_demo_plugin.net", "keisei_broken_plugin", "keisei_dup_plugin"):
            sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def run_cli() -> object:
    """``run_cli(*args, env=...)`` runs ``python -m keisei_core`` in a fresh interpreter."""
    return _run_cli


def _run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keisei_core", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=300,
    )
