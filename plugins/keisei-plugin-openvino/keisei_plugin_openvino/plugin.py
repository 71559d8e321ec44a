"""Entry point of ``keisei-plugin-openvino``: the ``openvino``, ``openvino-bf16`` and
``openvino-int8`` strategies and the ``peers`` probe.

Importing this module imports neither torch nor openvino; ``apply`` and ``run`` do, on
first use.

Why bf16 is a strategy of its own (``openvino-bf16``) and not ``bf16+openvino``: keisei's
``bf16`` transform is ``torch.autocast``, which a graph export turns into explicit casts
around each operation, so OpenVINO would run that cast graph instead of choosing its own
bf16 kernels and layouts; OpenVINO's way is the ``INFERENCE_PRECISION_HINT`` property on
a float32 graph. A strategy's ``precision`` is what selects the validation tolerance, so
one name per hint states it where keisei reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keisei_core.plugin import ProbeSpec, StrategyContext, StrategySpec, hookimpl
from keisei_plugin_openvino.options import PeerOptions

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.0"  # the keisei plugin API (keisei_core.plugin) this plugin is written for


def apply_openvino(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_openvino.strategy import apply_openvino as apply

    return apply(model, context, strategy="openvino")


def apply_openvino_bf16(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_openvino.strategy import apply_openvino as apply

    return apply(model, context, strategy="openvino-bf16")


def apply_openvino_int8(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_openvino.int8 import apply_openvino_int8 as apply

    return apply(model, context)


def run_peers(context: Any) -> Any:
    from keisei_plugin_openvino.peers import run_peers as run

    return run(context)


@hookimpl
def keisei_register_compile_strategies(register: Callable[[StrategySpec], None]) -> None:
    # mypy types attrs' converter=frozenset parameter as Iterable[_T_co] (unbound); the
    # values are plain names, checked by StrategySpec's validators.
    register(
        StrategySpec(
            name="openvino",
            apply=apply_openvino,
            description=(
                "torch.export + OpenVINO CPU plugin, float32 (INFERENCE_PRECISION_HINT=f32), "
                "dynamic batch; inference only, IR cached on disk"
            ),
            kind="compiler",
            devices=frozenset({"cpu"}),  # type: ignore[arg-type]
            dtypes=frozenset({"float32"}),  # type: ignore[arg-type]
            training=False,
        )
    )
    register(
        StrategySpec(
            name="openvino-bf16",
            apply=apply_openvino_bf16,
            description=(
                "torch.export + OpenVINO CPU plugin computing in bfloat16 "
                "(INFERENCE_PRECISION_HINT=bf16); inference only, IR cached on disk"
            ),
            kind="compiler",
            devices=frozenset({"cpu"}),  # type: ignore[arg-type]
            dtypes=frozenset({"float32"}),  # type: ignore[arg-type]
            training=False,
            precision="bfloat16",
        )
    )
    register(
        StrategySpec(
            name="openvino-int8",
            apply=apply_openvino_int8,
            description=(
                "torch.export + OpenVINO, quantized to int8 by NNCF (nncf.quantize, calibrated on "
                "make_observations positions); validated at the policy level; inference only, IR cached"
            ),
            kind="compiler",
            devices=frozenset({"cpu"}),  # type: ignore[arg-type]
            dtypes=frozenset({"float32"}),  # type: ignore[arg-type]
            training=False,
            precision="int8",
        )
    )


@hookimpl
def keisei_register_probes(register: Callable[[ProbeSpec], None]) -> None:
    register(
        ProbeSpec(
            name="peers",
            run=run_peers,
            description=(
                "eager, keisei strategies and peer runtimes (ONNX Runtime, OpenVINO latency/"
                "throughput, f32/bf16) called directly, interleaved: ms, x eager, GFLOP/s, % of peak"
            ),
            unit="x",
            devices=frozenset({"cpu"}),  # type: ignore[arg-type]
            options=PeerOptions,
        )
    )
