"""Building blocks shared by the research families: square tokens, attention, heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SquareTokens(nn.Module):
    """Observation planes -> one token per square (learned positions) plus a value token.

    The value token has no square; it reads the board through attention and the value
    head pools from it (as a classifier token does).
    """

    def __init__(self, input_channels: int, board_size: int, width: int) -> None:
        super().__init__()
        self.squares = board_size * board_size
        self.embed = nn.Linear(input_channels, width)
        self.positions = nn.Parameter(torch.randn(self.squares, width) * 0.02)
        self.value_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        squares = self.embed(obs.flatten(2).transpose(1, 2)) + self.positions
        value = self.value_token.expand(obs.shape[0], -1, -1).to(squares.dtype)
        return torch.cat([squares, value], dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    ``attn_mask`` is boolean ``(T, T)``, True where a query may attend to a key.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln(x))`` then ``x + feed_forward(ln(x))``."""

    def __init__(self, width: int, heads: int, feed_forward: nn.Module) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.feed_forward = feed_forward

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.feed_forward(self.norm2(x))


class SquarePolicyHead(nn.Module):
    """Per-square features -> ``planes`` values per square -> linear map to every action.

    The same shape of head as ResTower's (2 planes x 81 squares -> 13,527 logits), so the
    families differ in their trunk, not in how actions are read out.
    """

    def __init__(self, width: int, squares: int, planes: int, num_actions: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.planes = nn.Linear(width, planes)
        self.out = nn.Linear(squares * planes, num_actions)

    def forward(self, squares: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.planes(self.norm(squares))).flatten(1))


class ValueHead(nn.Module):
    """One feature vector per position -> a scalar value (no squashing, as in Keisei)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.norm(features)))).squeeze(-1)
