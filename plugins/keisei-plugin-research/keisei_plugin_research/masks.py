"""Attention masks and routing plans, built once per shape and cached.

The stack this family comes from rebuilt its masks on every step, which cost memory and
time. Here each mask depends only on a shape (and device), so it is built on first use
and reused: a small LRU cache keyed by shape keeps memory bounded when batch sizes vary.
Inside ``torch.compile`` the cache is bypassed: the compiler traces the builder once per
shape and folds the result into the graph, which is the same saving without Python-side
state in the traced code.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

import torch

T = TypeVar("T")

# Strides for the priority order below; the first that does not divide the token count
# is coprime with it (they are primes), so ``j * stride mod n`` is a permutation.
_PRIORITY_STRIDES = (7919, 104729, 1299709)


class ShapeCache(Generic[T]):
    """A bounded LRU map from a shape key to a value built by ``build(key)``."""

    def __init__(self, build: Callable[..., T], max_entries: int = 8) -> None:
        self._build = build
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self.max_entries = max_entries
        self.builds = 0

    def get(self, *key: Hashable) -> T:
        if torch.compiler.is_compiling():
            return self._build(*key)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._build(*key)
        self.builds += 1
        self._entries[key] = value
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


def local_attention_mask(board_size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(squares + 1, squares + 1)``: True where a query may attend to a key.

    A square sees the squares within Chebyshev distance ``radius``; the last token (the
    value token) sees every square and itself, and no square sees it, so locality holds.
    """
    coords = torch.arange(board_size, device=device)
    rows = coords.repeat_interleave(board_size)
    cols = coords.repeat(board_size)
    distance = torch.maximum(
        (rows[:, None] - rows[None, :]).abs(), (cols[:, None] - cols[None, :]).abs()
    )
    squares = board_size * board_size
    mask = torch.zeros(squares + 1, squares + 1, dtype=torch.bool, device=device)
    mask[:squares, :squares] = distance <= radius
    mask[squares, :] = True
    return mask


class RoutingPlan(NamedTuple):
    """What routing needs that depends only on the number of tokens.

    ``order`` lists tokens in the order they claim expert capacity and ``inverse`` maps
    back. A fixed interleaved order (not batch order) means that when an expert
    saturates, the tokens that overflow to the ghosts are spread over the batch and the
    board instead of always being the last positions' tokens.
    """

    tokens: int
    regular_capacity: int
    ghost_capacity: int
    order: torch.Tensor
    inverse: torch.Tensor


def routing_plan(
    tokens: int, device: torch.device, *, experts: int, saturation: float, ghost_capacity: float
) -> RoutingPlan:
    fair_share = tokens / experts
    stride = next((s for s in _PRIORITY_STRIDES if tokens % s), 1)
    order = (torch.arange(tokens, device=device) * stride) % tokens
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(tokens, device=device)
    return RoutingPlan(
        tokens=tokens,
        regular_capacity=max(1, math.ceil(saturation * fair_share)),
        ghost_capacity=max(1, math.ceil(ghost_capacity * fair_share)),
        order=order,
        inverse=inverse,
    )
