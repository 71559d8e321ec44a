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

from keisei_core.plugin import StrategyContext, add_forward_wrapper, forward_wrappers, model_shapes
from keisei_plugin_openvino.convert import CONVERTER, openvino_version
from keisei_plugin_openvino.errors import InferenceOnlyError, OpenVinoStrategyError
from keisei_plugin_openvino.runtime import OpenVinoRunner, export_example, openvino_forward

# openvino-int8 (module .int8): what NNCF leaves in float computes in f32, not the bf16 default.
PRECISION_HINTS = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}


def _check_cell(strategy: str, model: nn.Module, context: StrategyContext) -> None:
    if context.training:
        raise InferenceOnlyError(
            f"strategy '{strategy}' is inference-only (a converted eval-mode graph without "
            "autograd); use it for rollouts and evaluation, not training"
        )
    if context.device != "cpu":
        raise OpenVinoStrategyError(f"strategy '{strategy}' runs on cpu only, not {context.device}")
    if context.dtype != "float32":
        raise OpenVinoStrategyError(f"strategy '{strategy}' takes float32 models only, not {context.dtype}")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and (tensor.dtype != torch.float32 or tensor.device.type != "cpu"):
            raise OpenVinoStrategyError(
                f"strategy '{strategy}' needs float32 CPU weights; {name} is {tensor.dtype} on {tensor.device}"
            )


def _observation_shape(model: nn.Module, example: torch.Tensor | None) -> tuple[int, int, int]:
    if example is not None:
        if example.dim() != 4:
            raise OpenVinoStrategyError(
                f"example observations must be 4-D (B, C, H, W), got shape {tuple(example.shape)}"
            )
        c, h, w = (int(s) for s in example.shape[1:])
        return c, h, w
    return model_shapes(model).observation


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
    shape = _observation_shape(model, context.example_obs)
    runner = runner_class(
        context, strategy, hint, shape, forward_wrappers(model),
        export_example(context.example_obs, shape), torch.get_num_threads(),
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
    context.record("inference_precision", runner.compiled.get_property("INFERENCE_PRECISION_HINT").to_string())
    return model
