"""The plain square transformer: square tokens with learned positions, a value token,
pre-norm blocks, policy from the square tokens and value from the value token."""

from __future__ import annotations

import torch
from torch import nn

from keisei_core.plugin import ActorCriticMixin
from keisei_plugin_research.layers import (
    FeedForward,
    SquarePolicyHead,
    SquareTokens,
    TransformerBlock,
    ValueHead,
)
from keisei_plugin_research.options import SquareTransformerOptions


class SquareTransformer(ActorCriticMixin, nn.Module):
    keisei_repeated_blocks = ("blocks",)

    def __init__(self, options: SquareTransformerOptions) -> None:
        super().__init__()
        squares = options.board_size * options.board_size
        self.observation_shape = (options.input_channels, options.board_size, options.board_size)
        self.num_actions = options.num_actions
        self.tokens = SquareTokens(options.input_channels, options.board_size, options.width)
        self.blocks = nn.Sequential(
            *(
                TransformerBlock(
                    options.width, options.heads, FeedForward(options.width, options.mlp_ratio * options.width)
                )
                for _ in range(options.depth)
            )
        )
        self.norm = nn.LayerNorm(options.width)
        self.policy_head = SquarePolicyHead(options.width, squares, options.policy_planes, options.num_actions)
        self.value_head = ValueHead(options.width, options.value_hidden)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(self.blocks(self.tokens(obs)))
        return self.policy_head(x[:, :-1]), self.value_head(x[:, -1])
