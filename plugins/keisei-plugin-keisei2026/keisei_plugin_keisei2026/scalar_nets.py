"""Keisei 2026's scalar-value families: ``resnet``, ``mlp`` and ``transformer``.

Each reads 50-plane observations and gives raw logits over the 11,259 actions of Keisei
2026's spatial action mapping (``square * 139 + move_type``; the policy layer is a flat
Linear, the action indices are the same) and ``tanh`` of a scalar value, returned as
``(B,)`` (Keisei 2026 returns ``(B, 1)``). Module names and registration order are Keisei
2026's, so its checkpoints load key for key.

- ResNet: ``relu(input_bn(input_conv(obs)))`` (3x3, no bias), ``num_layers`` blocks
  ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`` (3x3, no bias); policy
  ``policy_fc(flatten(relu(policy_bn(policy_conv(t)))))`` with a 1x1 conv to 2 planes;
  value ``tanh(value_fc2(relu(value_fc1(flatten(relu(value_bn(value_conv(t))))))))`` with a
  1x1 conv to 1 plane and ``value_fc1: Linear(81, hidden_size)``.
- MLP: ``trunk`` = ``[Linear, LayerNorm, ReLU]`` per hidden size over ``flatten(obs)``
  (channel-major, 50 * 81 inputs); ``policy_fc`` and ``tanh(value_fc)`` on the last layer.
- Transformer: tokens are squares (row-major), ``input_proj: Linear(C, d)`` plus
  ``row_embed[row] + col_embed[col]``; ``encoder`` is ``nn.TransformerEncoder`` of
  pre-norm layers (``norm_first``, ``dim_feedforward = 4d``, dropout 0.1, ReLU);
  ``policy_fc`` reads all 81 tokens flattened (token-major), the value
  ``tanh(value_fc2(relu(value_fc1(mean over tokens))))``.
"""

from __future__ import annotations

import torch
from torch import nn

from keisei_core.plugin import ActorCriticMixin
from keisei_plugin_keisei2026.options import MLPOptions, ResNetOptions, TransformerOptions
from keisei_plugin_keisei2026.spaces import spaces_for

BOARD = 9
SQUARES = BOARD * BOARD


class _Declared(ActorCriticMixin, nn.Module):
    def declare(self, input_channels: int) -> None:
        self.keisei_spaces = spaces_for(input_channels)
        self.observation_shape = self.keisei_spaces.observation.shape
        self.num_actions = self.keisei_spaces.actions.size


class ResidualBlock2026(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


class ResNet2026(_Declared):
    keisei_repeated_blocks: tuple[str, ...] = ("blocks",)

    def __init__(self, options: ResNetOptions) -> None:
        super().__init__()
        self.declare(options.input_channels)
        ch = options.hidden_size
        self.input_conv = nn.Conv2d(options.input_channels, ch, 3, padding=1, bias=False)
        self.input_bn = nn.BatchNorm2d(ch)
        self.blocks = nn.Sequential(*(ResidualBlock2026(ch) for _ in range(options.num_layers)))
        self.policy_conv = nn.Conv2d(ch, 2, 1, bias=False)
        self.policy_bn = nn.BatchNorm2d(2)
        self.policy_fc = nn.Linear(2 * SQUARES, self.num_actions)
        self.value_conv = nn.Conv2d(ch, 1, 1, bias=False)
        self.value_bn = nn.BatchNorm2d(1)
        self.value_fc1 = nn.Linear(SQUARES, ch)
        self.value_fc2 = nn.Linear(ch, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(torch.relu(self.input_bn(self.input_conv(obs))))
        policy = self.policy_fc(torch.relu(self.policy_bn(self.policy_conv(x))).flatten(1))
        v = torch.relu(self.value_bn(self.value_conv(x))).flatten(1)
        value = torch.tanh(self.value_fc2(torch.relu(self.value_fc1(v))))
        return policy, value.squeeze(-1)


class MLP2026(_Declared):
    def __init__(self, options: MLPOptions) -> None:
        super().__init__()
        self.declare(options.input_channels)
        layers: list[nn.Module] = []
        width = options.input_channels * SQUARES
        for size in options.hidden_sizes:
            layers += [nn.Linear(width, size), nn.LayerNorm(size), nn.ReLU()]
            width = size
        self.trunk = nn.Sequential(*layers)
        self.policy_fc = nn.Linear(width, self.num_actions)
        self.value_fc = nn.Linear(width, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(obs.flatten(1))
        return self.policy_fc(features), torch.tanh(self.value_fc(features)).squeeze(-1)


class Transformer2026(_Declared):
    def __init__(self, options: TransformerOptions) -> None:
        super().__init__()
        self.declare(options.input_channels)
        d = options.d_model
        self.input_channels = options.input_channels
        self.input_proj = nn.Linear(options.input_channels, d)
        self.row_embed = nn.Embedding(BOARD, d)
        self.col_embed = nn.Embedding(BOARD, d)
        layer = nn.TransformerEncoderLayer(
            d_model=d, nhead=options.nhead, dim_feedforward=4 * d, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=options.num_layers, enable_nested_tensor=False)
        self.policy_fc = nn.Linear(d * SQUARES, self.num_actions)
        self.value_fc1 = nn.Linear(d, d)
        self.value_fc2 = nn.Linear(d, 1)
        # Index grids, not weights: kept out of the state_dict as in Keisei 2026.
        self.register_buffer("_row_idx", torch.arange(BOARD), persistent=False)
        self.register_buffer("_col_idx", torch.arange(BOARD), persistent=False)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = obs.shape[0]
        tokens = self.input_proj(obs.permute(0, 2, 3, 1).reshape(batch, SQUARES, self.input_channels))
        position = (self.row_embed(self._row_idx)[:, None, :] + self.col_embed(self._col_idx)[None, :, :]).reshape(SQUARES, -1)
        encoded = self.encoder(tokens + position)
        policy = self.policy_fc(encoded.reshape(batch, -1))
        value = torch.tanh(self.value_fc2(torch.relu(self.value_fc1(encoded.mean(dim=1)))))
        return policy, value.squeeze(-1)


def build_resnet(options: ResNetOptions) -> ResNet2026:
    return ResNet2026(options)


def build_mlp(options: MLPOptions) -> MLP2026:
    return MLP2026(options)


def build_transformer(options: TransformerOptions) -> Transformer2026:
    return Transformer2026(options)
