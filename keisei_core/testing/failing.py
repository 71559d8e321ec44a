"""Models that misbehave on purpose, for the strategy contract's fallback tests.

:class:`RefusingModel` runs normally in plain eager mode and raises as soon as it sees
that something transformed it: traced or compiled (dynamo, torch.export, TorchScript,
the ONNX exporter), run under autocast, in a lowered dtype or in channels-last memory
format. :class:`DriftingModel` does not raise but returns shifted logits in the same
situations, so only an equivalence check can catch it. Every strategy that changes how
the model runs trips at least one of these tests; a strategy must then hand back a
model that still behaves as eager (fallback) or raise when fallback is off.
"""

from __future__ import annotations

import torch
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin

CHANNELS = 6
BOARD = 3
ACTIONS = 11


def transformed(obs: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this forward runs anywhere but plain float32, contiguous eager mode."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and (
        compiler.is_compiling() or bool(getattr(compiler, "is_exporting", lambda: False)())
    ):
        return True
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    if torch.is_autocast_enabled(obs.device.type):
        return True
    if obs.dtype != torch.float32 or weight.dtype != torch.float32:
        return True
    channels_last = torch.channels_last
    return bool(
        weight.dim() == 4
        and weight.is_contiguous(memory_format=channels_last)
        and not weight.is_contiguous()
    ) or bool(obs.is_contiguous(memory_format=channels_last) and not obs.is_contiguous())


class _Base(ActorCriticMixin, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, 4, kernel_size=3, padding=1)
        self.policy = nn.Linear(4 * BOARD * BOARD, ACTIONS)
        self.value = nn.Linear(4 * BOARD * BOARD, 1)
        self.observation_shape = (CHANNELS, BOARD, BOARD)
        self.num_actions = ACTIONS
        # Distinct names: strategies that cache artifacts by model name must not mix them up.
        self.keisei_model_name = f"keisei-testing-{type(self).__name__.lower()}"
        self.keisei_model_options = {"input_channels": CHANNELS, "board_size": BOARD, "num_actions": ACTIONS}

    def _heads(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(obs)).flatten(1)
        return self.policy(features), self.value(features).squeeze(-1)


class RefusingModel(_Base):
    """Raises RuntimeError when run anywhere but plain eager float32 (see module doc)."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if transformed(obs, self.conv.weight):
            raise RuntimeError("RefusingModel refuses to run compiled, traced or transformed")
        return self._heads(obs)


class DriftingModel(_Base):
    """Returns logits shifted by +1 per action index when run transformed (see module doc)."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, value = self._heads(obs)
        if transformed(obs, self.conv.weight):
            drift = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
            return logits + drift, value + 1.0
        return logits, value


def failing_models() -> dict[str, nn.Module]:
    """A fresh instance of each misbehaving model (fixed seed), by name."""
    torch.manual_seed(0)
    return {"refusing": RefusingModel().eval(), "drifting": DriftingModel().eval()}
