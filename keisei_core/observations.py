"""Observation-like inputs and realistic legal masks, generated from a seed.

The real Keisei encoding (46 planes on a 9 x 9 board, seen from the side to move):
planes 0-27 one-hot pieces (at most one piece per square across them), 28-41 hand
counts normalised per piece type (each plane constant), 42 side to move (constant 0/1),
43 move count / 500 (constant), 44-45 zero. For other channel counts the same layout is
scaled: the first 28/46 of the planes are piece planes, the next 14/46 hand planes, then
side-to-move, move-count and zero planes. Random normal noise never looks like this, and
compilers specialise on it differently, so validation and benchmarks use these inputs.

Keisei's 2026 encoding (50 planes, :mod:`keisei_core.spaces`) keeps planes 0-43 and adds
the repetition count as four exclusive binary planes 44-47 (1x, 2x, 3x, 4+; all zero for a
position seen once), the check indicator 48 (constant 0/1) and a reserved zero plane 49.
Pass ``space=`` (an :class:`~keisei_core.spaces.ObservationSpace`, e.g. the model's own,
see :func:`keisei_core.spaces.observations_for`) to pick the encoding; without it the
channel count picks it (46 and 50 planes on a 9 x 9 board are Keisei's two encodings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch

if TYPE_CHECKING:
    from keisei_core.spaces import ActionSpace, ObservationSpace

PIECE_PLANES_46 = 28
HAND_PLANES_46 = 14


@attrs.frozen
class PlaneLayout:
    """How ``channels`` planes split into pieces, hands, side to move, move count, zeros."""

    channels: int
    pieces: int
    hands: int
    side_to_move: int | None
    move_count: int | None
    repetition: int | None = None  # first of four exclusive repetition planes (2026)
    check: int | None = None

    @classmethod
    def for_encoding(cls, channels: int, encoding: str) -> PlaneLayout:
        from keisei_core.spaces import ENCODING_2026

        if encoding == ENCODING_2026:
            if channels != 50:
                raise ValueError(f"the {ENCODING_2026} encoding has 50 planes, not {channels}")
            return cls(50, PIECE_PLANES_46, HAND_PLANES_46, 42, 43, repetition=44, check=48)
        return cls.for_channels(channels)

    @classmethod
    def for_channels(cls, channels: int) -> PlaneLayout:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if channels == 46:
            return cls(46, PIECE_PLANES_46, HAND_PLANES_46, 42, 43)
        pieces = max(1, round(channels * PIECE_PLANES_46 / 46))
        hands = min(max(0, round(channels * HAND_PLANES_46 / 46)), channels - pieces)
        rest = channels - pieces - hands
        side = pieces + hands if rest >= 1 else None
        count = pieces + hands + 1 if rest >= 2 else None
        return cls(channels, pieces, hands, side, count)


def make_observations(
    batch_size: int,
    channels: int = 46,
    board_size: int = 9,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    occupancy: float = 0.5,
    space: ObservationSpace | None = None,
) -> torch.Tensor:
    """A batch of positions with the real plane structure (see module docstring)."""
    from keisei_core.spaces import ENCODING_2026, ENCODING_GENERIC

    if space is not None:
        channels, board_size, encoding = space.channels, space.board_size, space.encoding
    else:
        encoding = ENCODING_2026 if (channels, board_size) == (50, 9) else ENCODING_GENERIC
    layout = PlaneLayout.for_encoding(channels, encoding)
    gen = torch.Generator().manual_seed(seed)
    squares = board_size * board_size
    obs = torch.zeros(batch_size, channels, squares)
    # Each square holds a piece with probability `occupancy`; which piece plane is uniform.
    occupied = torch.rand(batch_size, squares, generator=gen) < occupancy
    piece = torch.randint(0, layout.pieces, (batch_size, squares), generator=gen)
    rows, cols = torch.nonzero(occupied, as_tuple=True)
    obs[rows, piece[rows, cols], cols] = 1.0
    if layout.hands:
        hands = torch.randint(0, 5, (batch_size, layout.hands), generator=gen).float() / 4.0
        obs[:, layout.pieces : layout.pieces + layout.hands, :] = hands.unsqueeze(-1)
    if layout.side_to_move is not None:
        side = torch.randint(0, 2, (batch_size, 1), generator=gen).float()
        obs[:, layout.side_to_move, :] = side
    if layout.move_count is not None:
        moves = torch.randint(0, 500, (batch_size, 1), generator=gen).float() / 500.0
        obs[:, layout.move_count, :] = moves
    if layout.repetition is not None:
        # Most positions are new (no plane set); repeats get exactly one of the four planes.
        count = torch.randint(0, 8, (batch_size,), generator=gen).clamp(max=4)
        seen = torch.nonzero(count > 0).flatten()
        obs[seen, layout.repetition + count[seen] - 1, :] = 1.0
    if layout.check is not None:
        checked = (torch.rand(batch_size, generator=gen) < 0.15).float()
        obs[:, layout.check, :] = checked.unsqueeze(-1)
    return obs.view(batch_size, channels, board_size, board_size).to(device=device, dtype=dtype)


def make_legal_masks(
    batch_size: int,
    num_actions: int = 13527,
    *,
    seed: int = 0,
    min_legal: int = 20,
    max_legal: int = 300,
    device: str | torch.device = "cpu",
    space: ActionSpace | None = None,
) -> torch.Tensor:
    """Boolean masks ``(B, A)`` with between ``min_legal`` and ``max_legal`` legal actions per
    row (clamped to ``[1, num_actions]``), as in real positions (tens to hundreds).
    ``space`` (the model's :class:`~keisei_core.spaces.ActionSpace`) sets ``num_actions``."""
    if space is not None:
        num_actions = space.size
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    high = max(1, min(max_legal, num_actions))
    low = max(1, min(min_legal, high))
    counts = torch.randint(low, high + 1, (batch_size,), generator=gen)
    mask = torch.zeros(batch_size, num_actions, dtype=torch.bool)
    for row in range(batch_size):
        legal = torch.randperm(num_actions, generator=gen)[: int(counts[row])]
        mask[row, legal] = True
    return mask.to(device)
