"""Entry point of ``keisei-plugin-inductor``: registers the TorchInductor strategies.

Importing this module never imports torch; each ``apply`` imports its module on first use.
Compilers (at most one per composition, last): ``inductor``, ``inductor-max-autotune``,
``inductor-reduce-overhead`` (CUDA graphs), ``inductor-freeze`` (CPU inference with
weights frozen into the code), ``aot-inductor`` (torch.export + AOTInductor package
cached on disk), ``int8`` (PT2E post-training quantization with the X86 Inductor
quantizer, calibrated on observation-like positions; needs ``torchao``), ``int8-aot`` (the
same quantized graph as an AOTInductor package cached on disk). Transforms
(compose before a compiler): ``channels-last``, ``bf16``, ``fp16``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keisei_core.plugin import StrategyContext, StrategySpec, hookimpl

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.0"  # the keisei plugin API (keisei_core.plugin) this plugin is written for


def apply_inductor(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.compilers import compile_with_inductor

    return compile_with_inductor(model, context)


def apply_max_autotune(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.compilers import compile_with_inductor

    return compile_with_inductor(model, context, mode="max-autotune")


def apply_reduce_overhead(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.compilers import compile_with_inductor

    return compile_with_inductor(model, context, mode="reduce-overhead")


def apply_freeze(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.compilers import compile_frozen

    return compile_frozen(model, context)


def apply_aot_inductor(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.aot import compile_aot

    return compile_aot(model, context)


def apply_int8(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.quantize import quantize_int8

    return quantize_int8(model, context)


def apply_int8_aot(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.quantize import quantize_int8

    return quantize_int8(model, context, aot=True)


def apply_channels_last(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.transforms import to_channels_last

    return to_channels_last(model, context)


def apply_bf16(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.transforms import autocast

    return autocast(model, context, "bfloat16")


def apply_fp16(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_inductor.transforms import autocast

    return autocast(model, context, "float16")


STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(
        name="inductor",
        apply=apply_inductor,
        description="torch.compile with TorchInductor (default mode), compiled in place, dynamic batch",
    ),
    StrategySpec(
        name="inductor-max-autotune",
        apply=apply_max_autotune,
        description="TorchInductor mode max-autotune: benchmarks kernel choices while compiling (slow compile)",
    ),
    StrategySpec(
        name="inductor-reduce-overhead",
        apply=apply_reduce_overhead,
        description="TorchInductor mode reduce-overhead: CUDA graphs cut launch overhead at small batches",
        devices={"cuda"},
    ),
    StrategySpec(
        name="inductor-freeze",
        apply=apply_freeze,
        description="TorchInductor with freezing: weights folded into the code, CPU inference only",
        devices={"cpu"},
        dtypes={"float32", "bfloat16"},
        training=False,
        frozen_weights=True,  # weights are constants of the code; load_state_dict recompiles
    ),
    StrategySpec(
        name="aot-inductor",
        apply=apply_aot_inductor,
        description="torch.export + AOTInductor package, cached on disk (model, weights, torch version); inference only",
        training=False,
        frozen_weights=True,  # the package holds the weights; load_state_dict finds or builds another
    ),
    StrategySpec(
        name="int8",
        apply=apply_int8,
        description=(
            "post-training int8 quantization (torch.export + torchao PT2E, X86 Inductor quantizer, "
            "oneDNN int8 kernels), calibrated on observation-like positions; CPU inference only"
        ),
        devices={"cpu"},
        dtypes={"float32"},
        training=False,
        precision="int8",
        frozen_weights=True,  # quantized constants: load_state_dict re-quantizes, in-place edits are not seen
    ),
    StrategySpec(
        name="int8-aot",
        apply=apply_int8_aot,
        description=(
            "int8's quantized graph compiled ahead of time (AOTInductor, freezing) into a package "
            "cached on disk (weights, calibration, torch/torchao, CPU); guard-free calls; CPU inference only"
        ),
        devices={"cpu"},
        dtypes={"float32"},
        training=False,
        precision="int8",
        frozen_weights=True,  # the package holds the quantized weights; load_state_dict finds or builds another
    ),
    StrategySpec(
        name="channels-last",
        apply=apply_channels_last,
        description="conv weights and observations in channels-last (NHWC) memory format",
        kind="transform",
    ),
    StrategySpec(
        name="bf16",
        apply=apply_bf16,
        description="autocast to bfloat16 (CPU and CUDA); outputs stay float32",
        kind="transform",
        dtypes={"float32"},
        precision="bfloat16",
    ),
    StrategySpec(
        name="fp16",
        apply=apply_fp16,
        description="autocast to float16 (CUDA only); outputs stay float32",
        kind="transform",
        devices={"cuda"},
        dtypes={"float32"},
        precision="float16",
    ),
)


@hookimpl
def keisei_register_compile_strategies(register: Callable[[StrategySpec], None]) -> None:
    for spec in STRATEGIES:
        register(spec)
