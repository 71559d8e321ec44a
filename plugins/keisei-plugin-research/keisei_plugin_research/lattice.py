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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from keisei_core.plugin import ActorCriticMixin
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
        offsets = neighbour_offsets(neighbourhood)
        slots = len(offsets)
        self.shifts = tuple((dz * board_size + dy) * board_size + dx for dz, dy, dx in offsets)
        self.cells, self.width, self.hidden = cells, width, hidden
        self.inside: torch.Tensor
        # Which slots hold a real neighbour: derived from the shape, kept out of the state_dict.
        inside = (neighbour_index(depth, board_size, neighbourhood) < cells).float().unsqueeze(-1)
        self.register_buffer("inside", inside, persistent=False)
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
        gated = content * self._exchange(gate)
        out = torch.baddbmm(self.b_out.unsqueeze(1), gated, self.w_out)
        return state + out

    def _exchange(self, gate: torch.Tensor) -> torch.Tensor:
        """The spatial gating unit's mix (see :class:`NeighbourMix`) plus the gate bias."""
        weights = (self.spatial_weight * self.inside).to(gate.dtype)
        return NeighbourMix.apply(gate, weights, self.shifts) + self.spatial_bias.unsqueeze(1)


class NeighbourMix(torch.autograd.Function):
    """``mixed[n] = sum over slots k of weights[n, k] * gate[n + shift_k]`` on the
    flattened ``(z, y, x)`` cell axis.

    A neighbour at offset ``(dz, dy, dx)`` sits ``shift = (dz * H + dy) * W + dx`` cells
    away along that axis; a neighbour beyond the lattice's edge has weight 0 (the
    ``inside`` mask), which also silences the wrap-around from one row to the next.
    Each slot is one fused multiply-add on contiguous slices, forward and backward.
    Why not ``gate[index]``: gathering materialises a ``(cells, slots, batch, hidden)``
    tensor and its backward is an index-put with accumulation; and shifted views of a
    padded copy make autograd fill a padded-size zero tensor per slot in backward.
    Both made a training step several times slower on CPU than this.
    """

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, weights: torch.Tensor, shifts: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(gate, weights)
        ctx.shifts = shifts
        cells = gate.shape[0]
        mixed = gate * weights[:, 0].unsqueeze(1)  # slot 0 is the cell itself
        for slot, shift in enumerate(shifts[1:], start=1):
            low, high = max(0, -shift), min(cells, cells - shift)
            if low < high:
                mixed[low:high].addcmul_(gate[low + shift : high + shift], weights[low:high, slot].unsqueeze(1))
        return mixed

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        gate, weights = ctx.saved_tensors
        cells = gate.shape[0]
        grad_gate = grad * weights[:, 0].unsqueeze(1)
        grad_weights = torch.zeros_like(weights)
        grad_weights[:, 0] = (grad * gate).sum(dim=1)
        for slot, shift in enumerate(ctx.shifts[1:], start=1):
            low, high = max(0, -shift), min(cells, cells - shift)
            if low < high:
                neighbour = gate[low + shift : high + shift]
                grad_gate[low + shift : high + shift].addcmul_(grad[low:high], weights[low:high, slot].unsqueeze(1))
                grad_weights[low:high, slot] = (grad[low:high] * neighbour).sum(dim=1)
        return grad_gate, grad_weights, None


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
