"""Residual blocks of the ResTower family.

Math per block (``x`` the block input, ``C`` channels, every conv 3x3 pad 1 with bias):

- ``ResidualBlock`` with plain SE (Keisei's original; keys ``conv1 bn1 conv2 bn2 se.fc1 se.fc2``):
  ``y = bn2(conv2(relu(bn1(conv1(x))))); out = relu(y * sigmoid(fc2(relu(fc1(mean_hw(y))))) + x)``
- ``ResidualBlock`` with SE-FiLM (same keys, ``se.fc2`` has ``2C`` outputs ``[g, b]``):
  ``y = ...as above...; out = relu(y * sigmoid(g) + b + x)``
- ``ResidualBlock`` without a unit (``se_ratio`` 0; keys ``conv1 bn1 conv2 bn2``):
  ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``
- ``GlobalPoolingBiasBlock`` (KataGo style; keys ``conv1 bn1 conv2 bn2 gpool.fc``):
  ``h = relu(bn1(conv1(x))) + fc([mean_hw(x), max_hw(x)]); out = relu(bn2(conv2(h)) + x)``
  where ``gpool.fc`` is ``Linear(2C, C)`` (weight ``[C, 2C]``: columns ``0..C-1`` read the
  means, ``C..2C-1`` the maxima; bias ``[C]``) and its output is broadcast over the board.

The SE units are the core's reference modules (:mod:`keisei_core.nn.se`) called as
``self.se(out, x)``: they include the residual add and the final ReLU, which is what lets
an operator plugin swap the whole unit for one fused kernel.
"""

from __future__ import annotations

import torch
from torch import nn

from keisei_core.plugin import SEUnit


def conv3x3(channels: int) -> nn.Conv2d:
    # Keisei's convs all carry a bias, even those that feed BatchNorm; checkpoints have it.
    return nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, then ``self.se(out, x)`` or, without a unit, ``relu(out + x)``."""

    se: SEUnit | None

    def __init__(self, width: int, se: SEUnit | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width)
        self.bn2 = nn.BatchNorm2d(width)
        # Registered last so the state_dict order is Keisei's (conv1, bn1, conv2, bn2, se).
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is None:
            return torch.relu(out + x)
        return self.se(out, x)


class GlobalPoolingBias(nn.Module):
    """``fc([mean_hw(x), max_hw(x)])`` shaped ``(B, C, 1, 1)``: a per-channel bias from the
    block input's global statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))), dim=1)
        return self.fc(pooled)[:, :, None, None]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pooling=[mean, max]"


class GlobalPoolingBiasBlock(nn.Module):
    """KataGo-style block: the global-pooling bias is added after conv1-BN-ReLU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width)
        self.bn2 = nn.BatchNorm2d(width)
        self.gpool = GlobalPoolingBias(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x))) + self.gpool(x)
        out = self.bn2(self.conv2(out))
        return torch.relu(out + x)
