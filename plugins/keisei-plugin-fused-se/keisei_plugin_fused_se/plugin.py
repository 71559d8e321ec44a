"""keisei registrations of the fused SE plugin: strategy ``fused-se``, probe ``se-op`` and
the ``keisei fused-se-bench`` command.

Importing this module imports neither torch nor the C++ library; the strategy and the
probe import them when they run.
"""

from __future__ import annotations

from keisei_core.plugin import (
    CommandRegister,
    CommandSpec,
    ProbeRegister,
    ProbeSpec,
    StrategyRegister,
    StrategySpec,
    hookimpl,
)
from keisei_plugin_fused_se.probe import run_se_op
from keisei_plugin_fused_se.strategy import apply_fused_se

KEISEI_PLUGIN_API = "1.2"  # SEFunction (1.1), paired_ratio and time_calls (1.2)


@hookimpl
def keisei_register_compile_strategies(register: StrategyRegister) -> None:
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
def keisei_register_probes(register: ProbeRegister) -> None:
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


@hookimpl
def keisei_register_commands(register: CommandRegister) -> None:
    register(
        CommandSpec(
            name="fused-se-bench",
            run="keisei_plugin_fused_se.bench:run_command",
            configure="keisei_plugin_fused_se.bench:configure",
            help=(
                "time the SE unit alone (eager vs compiled vs fused op), or a whole model with "
                "--model NAME; the same as python -m keisei_plugin_fused_se.bench"
            ),
        )
    )
