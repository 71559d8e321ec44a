"""The keisei plugin: the ``activation-checkpointing`` strategy and the
``train-stability`` and ``train-memory`` probes.

This module is what the entry point names; it imports neither torch nor the code that
needs it, so listing plugins stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keisei_core.plugin import ProbeSpec, StrategyContext, StrategySpec, hookimpl

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.1"  # the keisei plugin API (keisei_core.plugin) this plugin is written for


def apply_activation_checkpointing(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_train_memory.checkpointing import apply_activation_checkpointing as apply

    return apply(model, context)


def run_train_stability(context: Any) -> Any:
    from keisei_plugin_train_memory.stability import run_stability

    return run_stability(context)


def run_train_memory(context: Any) -> Any:
    from keisei_plugin_train_memory.train_memory import run_train_memory as run

    return run(context)


@hookimpl
def keisei_register_compile_strategies(register: Callable[[StrategySpec], None]) -> None:
    register(
        StrategySpec(
            name="activation-checkpointing",
            apply=apply_activation_checkpointing,
            description=(
                "torch.utils.checkpoint (non-reentrant) over the blocks a model names in "
                "keisei_repeated_blocks: less activation memory, one extra forward per block"
            ),
            kind="transform",
            training=True,
            train_only=True,  # eval mode runs the blocks as they are: nothing for auto to time
        )
    )


@hookimpl
def keisei_register_probes(register: Callable[[ProbeSpec], None]) -> None:
    register(
        ProbeSpec(
            name="train-stability",
            run=run_train_stability,
            description=(
                "100 consecutive PPO updates on streamed rollouts: steps completed, backward/graph-reuse "
                "errors, non-finite losses, memory slope per step after warm-up"
            ),
            unit="steps",
            needs_training=True,
            higher_is_better=True,
        )
    )
    register(
        ProbeSpec(
            name="train-memory",
            run=run_train_memory,
            description="peak memory of PPO update steps: CUDA allocator peak, or peak RSS of a fresh child process",
            unit="MiB",
            needs_training=True,
            higher_is_better=False,
        )
    )
