"""Model transforms: channels-last memory format and autocast (bf16, fp16).

Both change how the model computes, not what it is: parameters keep their names (the
state_dict is eager's), and ``forward`` is wrapped through an instance attribute
(:func:`keisei_core.compile.add_forward_wrapper`), so a compiler composed after them
compiles the wrapped forward and the PPO methods run it.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from keisei_core.plugin import StrategyContext, add_forward_wrapper


def channels_last_input(module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    return inner(obs.contiguous(memory_format=torch.channels_last), *args, **kwargs)


def to_channels_last(model: nn.Module, context: StrategyContext) -> nn.Module:
    """4-D weights (convolutions) and observations in NHWC; ``load_state_dict`` copies into
    the existing tensors, so loaded weights stay channels-last."""
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return add_forward_wrapper(model, channels_last_input)


def autocast_forward(
    module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, dtype: str, **kwargs: Any
) -> tuple[torch.Tensor, ...]:
    # Outputs go back to the observation dtype: callers (PPO losses, the report) see the
    # model's own dtype whatever it computed in.
    with torch.autocast(device_type=obs.device.type, dtype=getattr(torch, dtype)):
        outputs = inner(obs, *args, **kwargs)
    # Every output: (logits, value) and a multi-head model's extra heads (keisei_core.heads).
    return tuple(output.to(obs.dtype) for output in outputs)


def autocast(model: nn.Module, context: StrategyContext, dtype: str) -> nn.Module:
    """Run ``forward`` under ``torch.autocast`` in ``dtype`` on the observations' device."""
    context.record("autocast", dtype)
    return add_forward_wrapper(model, functools.partial(autocast_forward, dtype=dtype))
