"""Typed options of the three research families. Importing this module never imports torch.

Every family uses the conventional names ``input_channels``, ``board_size`` and
``num_actions`` so the core can infer shapes; cross-field rules (a width that the heads
divide) raise ``ValueError`` from ``__attrs_post_init__``, which the core's converter
turns into a one-line ConfigError naming the model.
"""

from __future__ import annotations

import attrs
from attrs import validators as v

NEIGHBOURHOODS = (6, 18, 26)
"""Lattice neighbourhoods: faces (6), faces and edges (18), the whole 3x3x3 cube (26)."""


def _board_field() -> int:
    return attrs.field(default=9, validator=[v.instance_of(int), v.ge(1), v.le(19)])


def _channels_field() -> int:
    return attrs.field(default=46, validator=[v.instance_of(int), v.ge(1)])


def _actions_field() -> int:
    return attrs.field(default=13527, validator=[v.instance_of(int), v.ge(1)])


def _int_range(default: int, low: int, high: int) -> int:
    return attrs.field(default=default, validator=[v.instance_of(int), v.ge(low), v.le(high)])


@attrs.frozen
class CellLatticeOptions:
    """A ``depth x board x board`` lattice of gMLP cells, each with its own weights.

    One propagation step updates every cell at once: layer norm, a channel projection to
    ``2 * expansion * cell_width``, a spatial gating unit whose gate mixes the cell's own
    gate branch with its ``neighbourhood`` neighbours' (the exchange between adjacent
    cells), and a projection back, added to the cell's state. The same cells run
    ``steps`` times, so information travels one cell per step.
    """

    input_channels: int = _channels_field()
    board_size: int = _board_field()
    num_actions: int = _actions_field()
    depth: int = _int_range(3, 1, 16)
    cell_width: int = _int_range(64, 2, 1024)
    expansion: int = _int_range(2, 1, 8)
    steps: int = _int_range(4, 1, 64)
    neighbourhood: int = attrs.field(default=6, validator=[v.instance_of(int), v.in_(NEIGHBOURHOODS)])
    policy_planes: int = _int_range(2, 1, 64)
    value_hidden: int = _int_range(64, 1, 4096)

    def __attrs_post_init__(self) -> None:
        # The surface layer's information needs depth - 1 steps to reach the output layer
        # and the surface cells' own output one more, so fewer steps leave cells untrained.
        if self.steps < self.depth:
            raise ValueError(
                f"'steps' must be >= depth ({self.depth}) so the observation and every layer's "
                f"cells reach the output layer: {self.steps}"
            )


@attrs.frozen
class SquareTransformerOptions:
    """A pre-norm transformer over the board's square tokens plus one value token."""

    input_channels: int = _channels_field()
    board_size: int = _board_field()
    num_actions: int = _actions_field()
    width: int = _int_range(128, 8, 4096)
    depth: int = _int_range(6, 1, 64)
    heads: int = _int_range(4, 1, 64)
    mlp_ratio: int = _int_range(4, 1, 16)
    policy_planes: int = _int_range(2, 1, 64)
    value_hidden: int = _int_range(128, 1, 4096)

    def __attrs_post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"'width' must be a multiple of heads ({self.heads}): {self.width}")


@attrs.frozen
class ExpertsWithGhostsOptions:
    """A transformer over square tokens whose feed-forward layers are mixtures of experts.

    The router sends each token to its best regular expert (top-1). An expert saturates
    once it holds ``saturation`` times its fair share (tokens / experts); tokens beyond
    that go to the ghost experts (the best ghost by the router's ghost logits), each of
    which holds at most ``ghost_capacity`` fair shares; what overflows the ghosts too is
    dropped (the residual carries it). ``attention_radius`` limits attention between
    squares to that Chebyshev distance (None: every square sees every square).
    """

    input_channels: int = _channels_field()
    board_size: int = _board_field()
    num_actions: int = _actions_field()
    width: int = _int_range(128, 8, 4096)
    depth: int = _int_range(4, 1, 64)
    heads: int = _int_range(4, 1, 64)
    experts: int = _int_range(4, 1, 64)
    ghosts: int = _int_range(2, 0, 64)
    expert_hidden: int = _int_range(256, 1, 16384)
    saturation: float = attrs.field(default=1.25, converter=float, validator=[v.gt(0.0), v.le(64.0)])
    ghost_capacity: float = attrs.field(default=0.5, converter=float, validator=[v.gt(0.0), v.le(64.0)])
    attention_radius: int | None = attrs.field(
        default=None, validator=v.optional([v.instance_of(int), v.ge(0), v.le(18)])
    )
    policy_planes: int = _int_range(2, 1, 64)
    value_hidden: int = _int_range(128, 1, 4096)

    def __attrs_post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"'width' must be a multiple of heads ({self.heads}): {self.width}")
