"""keisei's pytest plugin, loaded automatically through the ``pytest11`` entry point.

Options (narrow a contract run; also settable in ``addopts``):

- ``--keisei-models PATTERN``: only model cases whose names match (shell patterns,
  comma-separated), e.g. ``--keisei-models 'restower*'``.
- ``--keisei-strategies PATTERN``: only these strategies in equivalence tests.
- ``--keisei-size auto|preset|shrunk``: options for contracts over every registered
  model (``auto``: the preset when cheap, else shrunk; see keisei_core.testing.sizing).
- ``--keisei-matrix compilers|families|full``: which (model, compiler) pairs the
  contracts over every registered model check: each compiler once on the smallest
  model (default), a cover of model families, or every pair (see
  keisei_core.testing.cases.matrix_plan). Every model runs under every cheap strategy.

Fixtures:

- ``keisei_host``: a fresh, loaded :class:`~keisei_core.plugins.PluginHost` (built-ins and
  installed plugins, as the environment selects them), private to the test.
- ``keisei_host_factory``: ``keisei_host_factory(local=["my_models.py"], env={...},
  include_installed=True)`` makes and loads more hosts.
- ``keisei_build``: ``keisei_build("restower-small", width=8)`` builds a registered model
  (seed 0, eval mode) from a fresh host.

This module imports neither torch nor hypothesis; fixtures import what they need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from torch import nn

    from keisei_core.plugins import PluginHost

SIZES = ("auto", "preset", "shrunk")
MATRIX_LEVELS = ("compilers", "families", "full")  # keisei_core.testing.cases.MATRIX_LEVELS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keisei", "keisei contract suites")
    group.addoption(
        "--keisei-models", dest="keisei_models", default=None, metavar="PATTERN",
        help="run model contracts only for models matching these shell patterns (comma-separated)",
    )
    group.addoption(
        "--keisei-strategies", dest="keisei_strategies", default=None, metavar="PATTERN",
        help="check equivalence only under strategies matching these shell patterns (comma-separated)",
    )
    group.addoption(
        "--keisei-size", dest="keisei_size", default="auto", choices=SIZES,
        help="options for contracts over every registered model: auto (preset when cheap, else shrunk), preset, shrunk",
    )
    group.addoption(
        "--keisei-matrix", dest="keisei_matrix", default="compilers", choices=MATRIX_LEVELS,
        help="compilers checked over every registered model: each once on the smallest model (compilers), "
        "on a cover of model families (families), or on every model (full)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The contracts mark compile-heavy cases slow; `-m "not slow"` leaves them out.
    config.addinivalue_line("markers", "slow: compiles or runs long (the keisei contracts mark compiler cases)")


@pytest.fixture
def keisei_host_factory() -> Callable[..., PluginHost]:
    """Make fresh, loaded plugin hosts: ``keisei_host_factory(local=[...], env={...})``."""
    from keisei_core.plugins import PluginHost

    def make(
        local: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        strict: bool | None = None,
        include_installed: bool = True,
    ) -> PluginHost:
        return PluginHost(
            [str(p) for p in local], env=env, strict=strict, include_installed=include_installed
        ).load()

    return make


@pytest.fixture
def keisei_host(keisei_host_factory: Callable[..., PluginHost]) -> PluginHost:
    """A fresh plugin host with the built-ins and the installed plugins, loaded."""
    return keisei_host_factory()


@pytest.fixture
def keisei_build(keisei_host: PluginHost) -> Callable[..., nn.Module]:
    """``keisei_build(name, **options)``: a registered model from seed 0, in eval mode."""
    from keisei_core.testing.cases import ModelCase, build

    def make(name: str, **options: Any) -> nn.Module:
        return build(keisei_host, ModelCase(name, options))

    return make
