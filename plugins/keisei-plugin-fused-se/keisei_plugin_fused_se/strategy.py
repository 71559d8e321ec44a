"""The ``fused-se`` strategy: every SE unit of a model becomes one fused operator call.

A transform (``kind="transform"``): it composes with the other strategies, e.g.
``fused-se+inductor`` (inductor then compiles a graph in which each SE unit is a single
``keisei_fused_se.se_unit`` node) or ``channels-last+fused-se``. Parameters are shared
with the units it replaces, so the state_dict is unchanged and training works (the op
has an autograd formula).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keisei_core.plugin import StrategyContext

if TYPE_CHECKING:
    from torch import nn


def apply_fused_se(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_fused_se.module import fuse_se_units
    from keisei_plugin_fused_se.ops import cpu_kernel_isa, require_kernels

    require_kernels(context.device)
    fused, skipped = fuse_se_units(model)
    context.record("fused_se_units", len(fused))
    if skipped:
        context.record("fused_se_skipped", skipped)
    if context.device == "cpu":
        context.record("fused_se_cpu_isa", cpu_kernel_isa())
    return model
