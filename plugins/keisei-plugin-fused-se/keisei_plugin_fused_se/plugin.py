"""keisei registrations of the fused SE plugin: strategy ``fused-se`` and probe ``se-op``.

Importing this module imports neither torch nor the C++ library; the strategy and the
probe import them when they run.
"""

from __future__ import annotations

from collections.abc import Callable

from keisei_core.hookspecs import hookimpl
from keisei_core.specs import ProbeSpec, StrategySpec
from keisei_plugin_fused_se.probe import run_se_op
from keisei_plugin_fused_se.strategy import apply_fused_se


@hookimpl
def keisei_register_compile_strategies(register: Callable[[StrategySpec], None]) -> None:
    register(
        StrategySpec(
            name="fused-se",
            apply=apply_fused_se,
            description=(
                "swap every SE unit (plain or FiLM, with its residual add and ReLU) for one fused "
                "operator: C++ on CPU, Triton on CUDA; composes, e.g. fused-se+inductor"
            ),
            kind="transform",
            # devices and dtypes: the defaults, cpu and cuda x float32, bfloat16, float16
            training=True,
        )
    )


@hookimpl
def keisei_register_probes(register: Callable[[ProbeSpec], None]) -> None:
    register(
        ProbeSpec(
            name="se-op",
            run=run_se_op,
            description=(
                "the SE unit alone at the model's shapes: eager op sequence, torch.compile'd "
                "sequence and the fused op, interleaved; headline = fused speedup over eager "
                "(forward), the rest (µs, training step, vs compiled) in extra"
            ),
            unit="x",
            needs_training=False,
            higher_is_better=True,
        )
    )
