"""The cell lattice: a ``depth x board x board`` lattice of small gMLP cells.

Every cell has its own weights (about 25K parameters at the default width), so one
propagation step is a handful of batched matrix products over all cells at once. Cell
states are kept cell-major, ``(cells, batch, width)``, which turns the per-cell linear
maps into ``baddbmm`` calls without any transposes between steps.

Neighbour exchange happens inside each cell's spatial gating unit (gMLP, Liu et al.
2021): the gate of a cell is a learned per-channel mix of its own gate branch and its
neighbours'. As in gMLP, the mixing weights start near zero and the gate bias at one,
so at initialisation every cell is an ordinary residual MLP and exchange is learned.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_plugin_research.layers import SquarePolicyHead, ValueHead
from keisei_plugin_research.options import CellLatticeOptions


def neighbour_offsets(neighbourhood: int) -> list[tuple[int, int, int]]:
    """The cell itself first, then its neighbours: 6 share a face, 18 a face or an edge,
    26 any corner."""
    max_nonzero = {6: 1, 18: 2, 26: 3}[neighbourhood]
    around = [
        (dz, dy, dx)
        for dz, dy, dx in itertools.product((-1, 0, 1), repeat=3)
        if 0 < (dz != 0) + (dy != 0) + (dx != 0) <= max_nonzero
    ]
    return [(0, 0, 0), *around]


def neighbour_index(depth: int, board_size: int, neighbourhood: int) -> torch.Tensor:
    """``(cells, 1 + neighbours)`` indices into the cell axis; a neighbour outside the
    lattice points at index ``cells`` (a zero row appended before gathering)."""
    cells = depth * board_size * board_size
    offsets = neighbour_offsets(neighbourhood)
    index = torch.full((cells, len(offsets)), cells, dtype=torch.long)
    for z, y, x in itertools.product(range(depth), range(board_size), range(board_size)):
        cell = (z * board_size + y) * board_size + x
        for slot, (dz, dy, dx) in enumerate(offsets):
            nz, ny, nx = z + dz, y + dy, x + dx
            if 0 <= nz < depth and 0 <= ny < board_size and 0 <= nx < board_size:
                index[cell, slot] = (nz * board_size + ny) * board_size + nx
    return index


def _per_cell_uniform(cells: int, *shape: int, fan_in: int) -> nn.Parameter:
    # nn.Linear's default initialisation, drawn independently for every cell.
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(cells, *shape).uniform_(-bound, bound))


def _per_cell_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:]) * weight.unsqueeze(1) + bias.unsqueeze(1)


class LatticeCells(nn.Module):
    """All cells of the lattice; ``forward`` is one synchronous propagation step."""

    def __init__(self, depth: int, board_size: int, width: int, expansion: int, neighbourhood: int) -> None:
        super().__init__()
        cells = depth * board_size * board_size
        hidden = expansion * width
        index = neighbour_index(depth, board_size, neighbourhood)
        slots = index.shape[1]
        self.cells, self.width, self.hidden = cells, width, hidden
        self.neighbours: torch.Tensor
        # Derived from the shape, not learned: kept out of the state_dict.
        self.register_buffer("neighbours", index, persistent=False)
        self.norm_weight = nn.Parameter(torch.ones(cells, width))
        self.norm_bias = nn.Parameter(torch.zeros(cells, width))
        self.w_in = _per_cell_uniform(cells, width, 2 * hidden, fan_in=width)
        self.b_in = _per_cell_uniform(cells, 2 * hidden, fan_in=width)
        self.gate_norm_weight = nn.Parameter(torch.ones(cells, hidden))
        self.gate_norm_bias = nn.Parameter(torch.zeros(cells, hidden))
        self.spatial_weight = nn.Parameter(torch.randn(cells, slots, hidden) * 1e-2)
        self.spatial_bias = nn.Parameter(torch.ones(cells, hidden))
        self.w_out = _per_cell_uniform(cells, hidden, width, fan_in=hidden)
        self.b_out = _per_cell_uniform(cells, width, fan_in=hidden)

    def parameters_per_cell(self) -> int:
        return sum(p[0].numel() for p in self.parameters())

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``state``: ``(cells, batch, width)`` -> the state after one step."""
        x = _per_cell_layer_norm(state, self.norm_weight, self.norm_bias)
        z = F.gelu(torch.baddbmm(self.b_in.unsqueeze(1), x, self.w_in))
        content, gate = z.chunk(2, dim=-1)
        gate = _per_cell_layer_norm(gate, self.gate_norm_weight, self.gate_norm_bias)
        padded = torch.cat([gate, gate.new_zeros(1, *gate.shape[1:])], dim=0)
        around = padded[self.neighbours]  # (cells, slots, batch, hidden)
        mixed = (around * self.spatial_weight.unsqueeze(2)).sum(dim=1)
        gated = content * (mixed + self.spatial_bias.unsqueeze(1))
        out = torch.baddbmm(self.b_out.unsqueeze(1), gated, self.w_out)
        return state + out


class CellLattice(ActorCriticMixin, nn.Module):
    """Observation planes are read into the surface layer (depth 0), the cells propagate
    ``steps`` times, and the policy and value are read from the output layer (the last).

    The one module ``cells`` is applied at every step (weights tied across steps), so it
    is the repeated block that activation checkpointing wraps: each application becomes
    one checkpointed segment.
    """

    keisei_repeated_blocks = ("cells",)

    def __init__(self, options: CellLatticeOptions) -> None:
        super().__init__()
        board, width = options.board_size, options.cell_width
        self.squares = board * board
        self.steps = options.steps
        self.observation_shape = (options.input_channels, board, board)
        self.num_actions = options.num_actions
        self.read_in = nn.Linear(options.input_channels, width)
        self.initial_state = nn.Parameter(torch.randn(options.depth * self.squares, 1, width) * 0.02)
        self.cells = LatticeCells(options.depth, board, width, options.expansion, options.neighbourhood)
        self.policy_head = SquarePolicyHead(width, self.squares, options.policy_planes, options.num_actions)
        self.value_head = ValueHead(width, options.value_hidden)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = obs.shape[0]
        surface = self.read_in(obs.flatten(2).permute(2, 0, 1))  # (squares, batch, width)
        initial = self.initial_state
        state = torch.cat(
            [initial[: self.squares] + surface, initial[self.squares :].expand(-1, batch, -1)], dim=0
        )
        for _ in range(self.steps):
            state = self.cells(state)
        output = state[-self.squares :].transpose(0, 1)  # (batch, squares, width)
        return self.policy_head(output), self.value_head(output.mean(dim=1))
