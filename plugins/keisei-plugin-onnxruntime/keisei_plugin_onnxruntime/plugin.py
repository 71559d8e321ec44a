"""Entry point of ``keisei-plugin-onnxruntime``: registers the ``onnxruntime`` strategy.

Importing this module imports neither torch nor onnxruntime; ``apply`` does, on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keisei_core.plugin import StrategyContext, StrategySpec, hookimpl

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.0"  # the keisei plugin API (keisei_core.plugin) this plugin is written for

STRATEGY_NAME = "onnxruntime"


def apply_onnxruntime(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_onnxruntime.strategy import apply_onnxruntime as apply

    return apply(model, context)


@hookimpl
def keisei_register_compile_strategies(register: Callable[[StrategySpec], None]) -> None:
    register(
        StrategySpec(
            name=STRATEGY_NAME,
            apply=apply_onnxruntime,
            description=(
                "export with torch.onnx (dynamo) and run in an ONNX Runtime CPU session with a "
                "dynamic batch axis; inference only, export cached on disk"
            ),
            kind="compiler",
            # mypy types attrs' converter=frozenset parameter as Iterable[_T_co] (unbound);
            # the values are plain names, checked by StrategySpec's validators.
            devices=frozenset({"cpu"}),  # type: ignore[arg-type]
            dtypes=frozenset({"float32"}),  # type: ignore[arg-type]
            training=False,
            # The session holds the exported weights; new weights raise StaleWeightsError.
            frozen_weights=True,
        )
    )
