"""Keisei's ``ActorCritic`` baseline network (state_dict keys as in the original)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin

if TYPE_CHECKING:
    from keisei_core.builtin.models import ActorCriticOptions


class ActorCritic(ActorCriticMixin, nn.Module):
    """``conv`` 3x3 pad 1 (C_in -> 16), ReLU, flatten, ``policy_head`` and ``value_head`` Linear."""

    def __init__(self, options: ActorCriticOptions) -> None:
        super().__init__()
        flat = options.conv_channels * options.board_size * options.board_size
        self.conv = nn.Conv2d(options.input_channels, options.conv_channels, kernel_size=3, padding=1)
        self.policy_head = nn.Linear(flat, options.num_actions)
        self.value_head = nn.Linear(flat, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(obs)).flatten(1)
        return self.policy_head(features), self.value_head(features).squeeze(-1)
