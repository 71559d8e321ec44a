"""Shared compiled models: each strategy compiles a tiny ResTower once per session.

Compiles dominate this suite's time (5-40 s each on a 2-core CPU), so every test that
needs a compiled model takes it from a session fixture, and the property tests vary the
inputs (batch sizes inside the compiled buckets, seeds, board occupancy) rather than
compiling new models.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch
from torch import nn

from keisei_core.api import build_model
from keisei_core.compile import CompileReport, compile_model
from keisei_core.plugins import get_host

TINY: dict[str, Any] = {"depth": 1, "width": 8, "num_actions": 40}
BATCH_SIZES = (1, 4)


def restower_available() -> bool:
    return "restower-small" in get_host().models


def build_tiny(seed: int = 0, **overrides: Any) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("restower-small", **{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_restower() -> Any:
    """``build(seed=0, **overrides)``: a tiny ``restower-small`` (1 block x 8, 40 actions)."""
    if not restower_available():
        pytest.skip("keisei-plugin-restower is not installed")
    return build_tiny


@attrs.frozen
class Compiled:
    eager: nn.Module
    model: nn.Module
    report: CompileReport


def _compile(strategy: str, batch_sizes: tuple[int, ...] = BATCH_SIZES, **kwargs: Any) -> Compiled:
    if not restower_available():
        pytest.skip("keisei-plugin-restower is not installed")
    eager = build_tiny()
    model, report = compile_model(eager, strategy, batch_sizes=batch_sizes, **kwargs)
    return Compiled(eager, model, report)


@pytest.fixture(scope="session")
def inductor() -> Compiled:
    """``inductor`` validated at batch 1 and 4 in eval and train mode (forward, PPO
    methods, running statistics, gradients): 4 graphs plus 2 backward graphs."""
    return _compile("inductor")


@pytest.fixture(scope="session")
def inductor_warm(inductor: Compiled) -> Compiled:
    """The same model and strategy again: Inductor's caches should serve every graph."""
    return _compile("inductor")


# The variants compile one bucket in eval mode (one graph each): what differs from
# `inductor` is the mode or the transforms, not the batch-size handling tested there.
@pytest.fixture(scope="session")
def composed() -> Compiled:
    return _compile("channels-last+bf16+inductor", (4,), training=False)


@pytest.fixture(scope="session")
def frozen() -> Compiled:
    return _compile("inductor-freeze", (4,))


@pytest.fixture(scope="session")
def autotuned() -> Compiled:
    return _compile("inductor-max-autotune", (4,), training=False)


@pytest.fixture(scope="session")
def aot() -> Compiled:
    return _compile("aot-inductor")


@pytest.fixture(scope="session")
def aot_warm(aot: Compiled) -> Compiled:
    return _compile("aot-inductor")
