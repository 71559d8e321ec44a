"""Keisei's ActorCriticResTower, with the same module names, state_dict order and math.

``stem`` 3x3 conv -> ``bn_stem`` -> ReLU -> ``res_blocks`` (``depth`` blocks, see
:mod:`keisei_plugin_restower.blocks`) -> two heads, each an ``nn.Sequential`` of
``Conv2d(W, 2, 1), BatchNorm2d(2), ReLU, Flatten, Linear(2 * board_size**2, out)``
(keys use indices 0, 1 and 4): the policy head gives raw logits ``(B, num_actions)``, the
value head one number per position, squeezed to ``(B,)`` (no tanh).
"""

from __future__ import annotations

import torch
from torch import nn

from keisei_core.plugin import (
    ActorCriticMixin,
    SEUnit,
    SqueezeExcitation,
    SqueezeExcitationFiLM,
    se_hidden_width,
)
from keisei_plugin_restower.blocks import GlobalPoolingBiasBlock, ResidualBlock
from keisei_plugin_restower.options import ResTowerOptions


def head(width: int, board_size: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(width, 2, kernel_size=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * board_size * board_size, outputs),
    )


def make_block(options: ResTowerOptions) -> nn.Module:
    """One residual block of the kind ``options`` asks for."""
    if not options.has_unit:
        return ResidualBlock(options.width)
    if options.se_kind == "gpool":
        return GlobalPoolingBiasBlock(options.width)
    hidden = se_hidden_width(options.width, options.se_ratio)
    unit: SEUnit
    if options.se_kind == "film":
        unit = SqueezeExcitationFiLM(options.width, hidden)
    else:
        unit = SqueezeExcitation(options.width, hidden)
    return ResidualBlock(options.width, unit)


class ActorCriticResTower(ActorCriticMixin, nn.Module):
    """Residual tower with policy and value heads; ``forward(obs) -> (logits, value)``."""

    # Names the Sequential whose children are the repeated blocks, so block-level
    # transforms (activation checkpointing, per-block compilation) find them without
    # knowing this class.
    keisei_repeated_blocks: tuple[str, ...] = ("res_blocks",)

    def __init__(self, options: ResTowerOptions) -> None:
        super().__init__()
        self.observation_shape = (options.input_channels, options.board_size, options.board_size)
        self.num_actions = options.num_actions
        self.stem = nn.Conv2d(options.input_channels, options.width, kernel_size=3, padding=1)
        self.bn_stem = nn.BatchNorm2d(options.width)
        self.res_blocks = nn.Sequential(*(make_block(options) for _ in range(options.depth)))
        self.policy_head = head(options.width, options.board_size, options.num_actions)
        self.value_head = head(options.width, options.board_size, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.bn_stem(self.stem(obs)))
        x = self.res_blocks(x)
        return self.policy_head(x), self.value_head(x).squeeze(-1)


def build_restower(options: ResTowerOptions) -> ActorCriticResTower:
    return ActorCriticResTower(options)
