"""Built-in plugin: the ``eager`` strategy (the model as it is; every comparison's baseline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keisei_core.hookspecs import hookimpl
from keisei_core.specs import StrategyContext, StrategySpec

if TYPE_CHECKING:
    from torch import nn


def apply_eager(model: nn.Module, context: StrategyContext) -> nn.Module:
    return model


@hookimpl
def keisei_register_compile_strategies(register: Callable[[StrategySpec], None]) -> None:
    register(
        StrategySpec(
            name="eager",
            apply=apply_eager,
            description="PyTorch eager mode, unchanged: the baseline of every comparison",
            kind="compiler",
            baseline=True,
        )
    )
