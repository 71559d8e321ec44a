"""Keisei 2026's SE-ResNet (``se_resnet``): KataGo-style global-pooling bias and SE-FiLM in
every block, a spatial policy head and W/D/L value and score heads.

Every convolution is bias-free except the policy head's last 1x1 (which feeds no BN).
Math (``x`` a block's input, ``C`` channels, ``pool(t) = [mean_hw(t), max_hw(t), std_hw(t)]``
with the population std, ``(B, 3C)``):

- block: ``h = relu(bn1(conv1(x))) + global_fc(pool(x))`` (broadcast over the board;
  ``global_fc`` is ``Linear(3C, G), ReLU, Linear(G, C)``), ``y = bn2(conv2(h))``, then SE-FiLM
  on ``y``: ``[g, b] = se_fc2(relu(se_fc1(mean_hw(y))))`` (``se_fc1: Linear(C, C // r)``,
  ``se_fc2: Linear(C // r, 2C)``, outputs ``0..C-1`` the gate logits, ``C..2C-1`` the shift),
  ``out = relu(y * sigmoid(g) + b + x)``.
- trunk: ``relu(input_bn(input_conv(obs)))``, then ``blocks``.
- policy: ``policy_conv2(relu(policy_bn1(policy_conv1(t))))`` gives ``(B, 139, 9, 9)``,
  permuted to ``(B, 9, 9, 139)`` and flattened row-major to the 11,259 spatial actions.
- value: ``value_fc2(relu(value_fc1(pool(t))))`` -> ``(B, 3)`` W/D/L logits;
  score: ``score_fc2(relu(score_fc1(pool(t))))`` -> ``(B,)``; both read one pool of the trunk.

``forward`` returns ``(policy (B, 11259), P(W) - P(L) (B,), wdl logits (B, 3), score (B,))``.
"""

from __future__ import annotations

import torch
from torch import nn

from keisei_core.plugin import WDL_SCORE_HEADS, ActorCriticMixin, SEFunction, scalar_value_from_wdl
from keisei_plugin_keisei2026.options import SEResNetOptions
from keisei_plugin_keisei2026.pooling import global_pool
from keisei_plugin_keisei2026.spaces import spaces_for

BOARD = 9
MOVE_TYPES = 139


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)


class GlobalPoolFiLMBlock(nn.Module):
    """One SE-ResNet block; module names and registration order are Keisei 2026's."""

    def __init__(self, channels: int, se_hidden: int, global_pool_channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.global_fc = nn.Sequential(
            nn.Linear(3 * channels, global_pool_channels), nn.ReLU(), nn.Linear(global_pool_channels, channels)
        )
        self.se_fc1 = nn.Linear(channels, se_hidden)
        self.se_fc2 = nn.Linear(se_hidden, 2 * channels)
        # The SE-FiLM math, parameter-free: the weights stay the block's own (upstream's
        # keys), and an operator plugin (fused-se) can swap this module for a fused kernel.
        self.se = SEFunction(film=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.global_fc(global_pool(x))
        h = torch.relu(self.bn1(self.conv1(x))) + bias[:, :, None, None]
        y = self.bn2(self.conv2(h))
        return self.se(y, x, self.se_fc1.weight, self.se_fc1.bias, self.se_fc2.weight, self.se_fc2.bias)


class SEResNet2026(ActorCriticMixin, nn.Module):
    keisei_output_heads = WDL_SCORE_HEADS
    keisei_repeated_blocks: tuple[str, ...] = ("blocks",)

    def __init__(self, options: SEResNetOptions) -> None:
        super().__init__()
        ch = options.channels
        self.keisei_spaces = spaces_for(options.input_channels)
        self.observation_shape = self.keisei_spaces.observation.shape
        self.num_actions = self.keisei_spaces.actions.size
        self.input_conv = conv3x3(options.input_channels, ch)
        self.input_bn = nn.BatchNorm2d(ch)
        self.blocks = nn.Sequential(
            *(GlobalPoolFiLMBlock(ch, options.se_hidden, options.global_pool_channels) for _ in range(options.num_blocks))
        )
        self.policy_conv1 = nn.Conv2d(ch, options.policy_channels, kernel_size=1, bias=False)
        self.policy_bn1 = nn.BatchNorm2d(options.policy_channels)
        self.policy_conv2 = nn.Conv2d(options.policy_channels, MOVE_TYPES, kernel_size=1)
        self.value_fc1 = nn.Linear(3 * ch, options.value_fc_size)
        self.value_fc2 = nn.Linear(options.value_fc_size, 3)
        self.score_fc1 = nn.Linear(3 * ch, options.score_fc_size)
        self.score_fc2 = nn.Linear(options.score_fc_size, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.blocks(torch.relu(self.input_bn(self.input_conv(obs))))
        policy = self.policy_conv2(torch.relu(self.policy_bn1(self.policy_conv1(x))))
        policy = policy.permute(0, 2, 3, 1).flatten(1)  # square-major: (row * 9 + col) * 139 + type
        pooled = global_pool(x)
        wdl = self.value_fc2(torch.relu(self.value_fc1(pooled)))
        score = self.score_fc2(torch.relu(self.score_fc1(pooled))).squeeze(-1)
        return policy, scalar_value_from_wdl(wdl), wdl, score


def build_se_resnet(options: SEResNetOptions) -> SEResNet2026:
    return SEResNet2026(options)
