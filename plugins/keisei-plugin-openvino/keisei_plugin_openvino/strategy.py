"""``apply`` of the ``openvino`` strategies: convert (or reuse the cached IR), compile with
the CPU plugin, and route the module's forward through it.

Notes recorded in the compile report (``context.record``): ``warm_start``, ``artifact``
(the .xml path, or None when the cache could not be written), ``convert_seconds`` (the
cold conversion's seconds, also on a warm start), ``openvino_compile_seconds``,
``cache_miss_reason``, ``cache_write_error``, ``converter``, ``openvino_version``,
``openvino_config`` (the CPU plugin properties) and ``inference_precision`` (what the
compiled model reports it computes in).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from keisei_core.plugin import (
    StrategyContext,
    add_forward_wrapper,
    check_exported_cell,
    export_example,
    exported_observation_shape,
    forward_wrappers,
)
from keisei_plugin_openvino.convert import CONVERTER, openvino_version
from keisei_plugin_openvino.errors import InferenceOnlyError, OpenVinoStrategyError
from keisei_plugin_openvino.runtime import OpenVinoRunner, openvino_forward

# openvino-int8 (module .int8): what NNCF leaves in float computes in f32, not the bf16 default.
PRECISION_HINTS = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}


def _check_cell(strategy: str, model: nn.Module, context: StrategyContext) -> None:
    check_exported_cell(
        strategy, model, context, error=OpenVinoStrategyError, inference_error=InferenceOnlyError,
        graph="a converted OpenVINO model",
    )


def apply_openvino(
    model: nn.Module, context: StrategyContext, *, strategy: str = "openvino",
    runner_class: type[OpenVinoRunner] = OpenVinoRunner,
) -> nn.Module:
    """Compile ``model`` (a private copy, changed in place) with OpenVINO's CPU plugin."""
    hint = PRECISION_HINTS.get(strategy)
    if hint is None:
        raise OpenVinoStrategyError(f"unknown openvino strategy {strategy!r}; one of {sorted(PRECISION_HINTS)}")
    _check_cell(strategy, model, context)
    model.eval()
    shape = exported_observation_shape(model, context.example_obs, error=OpenVinoStrategyError)
    runner = runner_class(
        context, strategy, hint, shape, forward_wrappers(model),
        export_example(context.example_obs, shape, error=OpenVinoStrategyError), torch.get_num_threads(),
    )
    runner.ensure(model)
    add_forward_wrapper(model, functools.partial(openvino_forward, runner=runner))
    for key, value in runner.facts.items():
        if value is not None or key == "artifact":
            context.record(key, value)
    context.record("converter", CONVERTER)
    context.record("openvino_version", openvino_version())
    # Notes are flat values: the CPU plugin properties as "KEY=value" strings.
    context.record("openvino_config", [f"{k}={v}" for k, v in runner.config.items()])
    if runner.parallel_requests:  # large batches: the THROUGHPUT model's parallel requests
        context.record("openvino_parallel_config", [f"{k}={v}" for k, v in runner.parallel_config.items()])
    context.record("inference_precision", runner.compiled.get_property("INFERENCE_PRECISION_HINT").to_string())
    return model
