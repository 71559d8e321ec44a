"""The squeeze-excitation unit together with the residual add and ReLU that follow it.

One module computes ``relu(se(y) + x)`` for a residual block's branch output ``y`` and its
input (the residual) ``x``, called as ``self.se(out, x)``. Keeping the whole unit in one
module is what lets an operator plugin swap it for a single fused kernel.

Math (``mean_hw`` averages over the board; fc1/fc2 are 1x1 convolutions with bias):

- plain SE (Keisei's original):
  ``s = mean_hw(y); g = fc2(relu(fc1(s))); out = relu(y * sigmoid(g) + x)``
- SE-FiLM (scale and shift, as Leela Chess Zero and later Keisei use):
  ``s = mean_hw(y); [g, b] = fc2(relu(fc1(s))); out = relu(y * sigmoid(g) + b + x)``

Parameter layout (state_dict keys ``fc1.weight``, ``fc1.bias``, ``fc2.weight``, ``fc2.bias``):

- ``fc1``: ``Conv2d(C, hidden, 1)``: weight ``[hidden, C, 1, 1]``, bias ``[hidden]``
- ``fc2``: ``Conv2d(hidden, C, 1)`` (plain) or ``Conv2d(hidden, 2C, 1)`` (FiLM), weight
  ``[C or 2C, hidden, 1, 1]``; for FiLM output channels ``0..C-1`` are the gate logits ``g``
  and ``C..2C-1`` the shift ``b``.

``hidden = max(1, int(C * se_ratio))`` as in Keisei (64 for C=256, ratio 0.25).

Networks whose SE weights belong to the block itself (Keisei 2026 names them
``se_fc1``/``se_fc2``, two ``Linear`` layers of the block) keep their state_dict keys by
calling a parameter-free :class:`SEFunction` with those weights: it registers no
parameters, so the keys stay the block's, and operator plugins swap it like an SE unit.
"""

from __future__ import annotations

import torch
from torch import nn


def se_hidden_width(channels: int, se_ratio: float) -> int:
    """Keisei's rule for the SE bottleneck width."""
    return max(1, int(channels * se_ratio))


class SEUnit(nn.Module):
    """Base of the SE units: subclasses differ only in how fc2's output is used.

    Operator plugins recognise SE units by this class and read ``fc1``, ``fc2``,
    ``channels``, ``hidden`` and ``film``.
    """

    film: bool = False

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels < 1 or hidden < 1:
            raise ValueError(f"SE unit needs channels >= 1 and hidden >= 1, got {channels}, {hidden}")
        self.channels = channels
        self.hidden = hidden
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels * (2 if self.film else 1), kernel_size=1)

    def excitation(self, y: torch.Tensor) -> torch.Tensor:
        """``fc2(relu(fc1(mean_hw(y))))`` with shape ``(B, C or 2C, 1, 1)``."""
        squeezed = y.mean(dim=(2, 3), keepdim=True)
        return self.fc2(torch.relu(self.fc1(squeezed)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, film={self.film}"


class SqueezeExcitation(SEUnit):
    """Plain SE: ``relu(y * sigmoid(fc2(relu(fc1(mean_hw(y))))) + x)``."""

    film = False

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.excitation(y))
        return torch.relu(y * gate + residual)


class SqueezeExcitationFiLM(SEUnit):
    """SE-FiLM: ``[g, b] = fc2(relu(fc1(mean_hw(y)))); relu(y * sigmoid(g) + b + x)``."""

    film = True

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        gate_logits, shift = self.excitation(y).chunk(2, dim=1)
        return torch.relu(y * torch.sigmoid(gate_logits) + shift + residual)


class SEFunction(nn.Module):
    """The SE unit's math with the weights passed in: ``forward(y, residual, w1, b1, w2, b2)``.

    ``w1`` is ``(hidden, C)`` and ``w2`` ``(C, hidden)`` (``(2C, hidden)`` for FiLM), the
    layout of ``nn.Linear`` weights and of flattened 1x1 convolution weights; the biases
    may be None. It owns no parameters: a block keeps its own ``Linear`` layers (and so its
    state_dict keys) and calls ``self.se(y, x, self.se_fc1.weight, self.se_fc1.bias, ...)``.
    Operator plugins recognise it by this class and ``film``, as they do :class:`SEUnit`.
    """

    def __init__(self, film: bool) -> None:
        super().__init__()
        self.film = film

    def forward(
        self,
        y: torch.Tensor,
        residual: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor | None,
        w2: torch.Tensor,
        b2: torch.Tensor | None,
    ) -> torch.Tensor:
        excited = nn.functional.linear(torch.relu(nn.functional.linear(y.mean(dim=(2, 3)), w1, b1)), w2, b2)
        if self.film:
            gate_logits, shift = excited.chunk(2, dim=1)
            return torch.relu(y * torch.sigmoid(gate_logits)[:, :, None, None] + shift[:, :, None, None] + residual)
        return torch.relu(y * torch.sigmoid(excited)[:, :, None, None] + residual)

    def extra_repr(self) -> str:
        return f"film={self.film}"
