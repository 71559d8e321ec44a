"""The SE unit in plain PyTorch ops: what every fused implementation is checked against.

Same math as :mod:`keisei_core.nn.se`, written on the operator's arguments (2-D weights):

    s = mean_hw(y)                         (B, C)
    h = relu(s @ w1.T + b1)                (B, hidden)
    e = h @ w2.T + b2                      (B, C) or (B, 2C) for FiLM
    out = relu(y * sigmoid(e[:, :C]) [+ e[:, C:]] + residual)
"""

from __future__ import annotations

import torch
from torch import Tensor


def se_unit_preactivation(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> Tensor:
    """``y * sigmoid(g) [+ shift] + residual``: the unit before its final ReLU."""
    pooled = y.mean(dim=(2, 3))
    hidden = torch.relu(torch.nn.functional.linear(pooled, w1, b1))
    excite = torch.nn.functional.linear(hidden, w2, b2)
    if film:
        logits, shift = excite.chunk(2, dim=1)
        return y * torch.sigmoid(logits)[:, :, None, None] + shift[:, :, None, None] + residual
    return y * torch.sigmoid(excite)[:, :, None, None] + residual


def se_unit_reference(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> Tensor:
    return torch.relu(se_unit_preactivation(y, residual, w1, b1, w2, b2, film))
