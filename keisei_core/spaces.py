"""Observation and action spaces, declared by a model as metadata.

Keisei has two generations of encodings, and a model says which one it was trained on:

- 2025 (``keisei-2025``): 46 planes on a 9 x 9 board; 13,527 flat actions
  (81 x 80 x 2 board moves -- from, to, promote -- plus 81 x 7 drops).
- 2026 (``keisei-2026``): 50 planes (the 2025 planes 0-43, then repetition count 1x/2x/3x/4+
  as four exclusive binary planes 44-47, check indicator 48, a reserved zero plane 49);
  11,259 *spatial* actions: action ``square * 139 + move_type`` with ``square = row * 9 +
  col`` (so a ``(B, 9, 9, 139)`` policy tensor flattens row-major into the action space).
  Move types 0-63 slide (8 directions x 8 distances), 64-127 the same with promotion,
  128-131 knight jumps (left, left+promote, right, right+promote), 132-138 drops.

A model declares ``keisei_spaces = ModelSpaces(...)`` (a class or instance attribute);
:func:`model_spaces` reads it, falling back for older models to their
``observation_shape`` / ``num_actions`` (encoding ``generic``). ``make_observations``,
``make_legal_masks``, the contracts, validation and ``keisei info`` read the spaces from
the model, never from constants. Importing this module never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import torch
    from torch import nn

ENCODING_2025 = "keisei-2025"
ENCODING_2026 = "keisei-2026"
ENCODING_GENERIC = "generic"
OBSERVATION_ENCODINGS = (ENCODING_2025, ENCODING_2026, ENCODING_GENERIC)

LAYOUT_FLAT = "flat"
LAYOUT_SPATIAL = "spatial"
ACTION_LAYOUTS = (LAYOUT_FLAT, LAYOUT_SPATIAL)

# Channel counts the named encodings have (a generic encoding takes any count).
_ENCODING_CHANNELS = {ENCODING_2025: 46, ENCODING_2026: 50}


@attrs.frozen
class ObservationSpace:
    """``(channels, board_size, board_size)`` float planes in ``encoding``'s layout."""

    channels: int = attrs.field(validator=attrs.validators.ge(1))
    board_size: int = attrs.field(default=9, validator=attrs.validators.ge(1))
    encoding: str = attrs.field(default=ENCODING_GENERIC, validator=attrs.validators.in_(OBSERVATION_ENCODINGS))

    def __attrs_post_init__(self) -> None:
        wanted = _ENCODING_CHANNELS.get(self.encoding)
        if wanted is not None and self.channels != wanted:
            raise ValueError(f"encoding {self.encoding!r} has {wanted} planes, not {self.channels}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.board_size, self.board_size)

    def describe(self) -> str:
        return f"{self.channels} planes x {self.board_size}x{self.board_size} ({self.encoding})"


@attrs.frozen
class ActionSpace:
    """``size`` actions; ``spatial`` layouts are ``board x board x move_types`` flattened
    row-major (``index = (row * board + col) * move_types + move_type``)."""

    size: int = attrs.field(validator=attrs.validators.ge(1))
    layout: str = attrs.field(default=LAYOUT_FLAT, validator=attrs.validators.in_(ACTION_LAYOUTS))
    board_size: int = attrs.field(default=9, validator=attrs.validators.ge(1))
    move_types: int | None = None
    name: str = ENCODING_GENERIC

    def __attrs_post_init__(self) -> None:
        if self.layout == LAYOUT_SPATIAL:
            if self.move_types is None or self.move_types < 1:
                raise ValueError("a spatial action space needs move_types >= 1")
            if self.size != self.board_size * self.board_size * self.move_types:
                raise ValueError(
                    f"spatial action space: size {self.size} != {self.board_size}^2 x {self.move_types}"
                )
        elif self.move_types is not None:
            raise ValueError("move_types only applies to spatial action spaces")

    @property
    def spatial_shape(self) -> tuple[int, int, int] | None:
        """``(board, board, move_types)`` for a spatial space, else None."""
        if self.move_types is None:
            return None
        return (self.board_size, self.board_size, self.move_types)

    def index(self, row: int, col: int, move_type: int) -> int:
        """The flat action of ``move_type`` at square ``(row, col)`` (spatial spaces only)."""
        shape = self.spatial_shape
        if shape is None:
            raise ValueError(f"action space {self.name!r} is not spatial")
        if not (0 <= row < shape[0] and 0 <= col < shape[1] and 0 <= move_type < shape[2]):
            raise ValueError(f"({row}, {col}, {move_type}) lies outside {shape}")
        return (row * shape[1] + col) * shape[2] + move_type

    def spatial_view(self, flat: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` logits or masks seen as ``(B, board, board, move_types)`` (a view)."""
        shape = self.spatial_shape
        if shape is None:
            raise ValueError(f"action space {self.name!r} is not spatial")
        return flat.reshape(flat.shape[0], *shape)

    def describe(self) -> str:
        if self.spatial_shape is None:
            return f"{self.size:,} actions ({self.name})"
        board, _, types = self.spatial_shape
        return f"{self.size:,} actions = {board}x{board} squares x {types} move types, spatial ({self.name})"


@attrs.frozen
class ModelSpaces:
    observation: ObservationSpace
    actions: ActionSpace

    def summary(self) -> dict[str, Any]:
        """Plain data for ``keisei info`` and reports."""
        return {
            "observation": {**attrs.asdict(self.observation), "shape": list(self.observation.shape)},
            "actions": {
                **attrs.asdict(self.actions),
                "spatial_shape": list(self.actions.spatial_shape) if self.actions.spatial_shape else None,
            },
        }


KEISEI_2025 = ModelSpaces(
    ObservationSpace(46, 9, ENCODING_2025), ActionSpace(13527, LAYOUT_FLAT, 9, None, ENCODING_2025)
)
KEISEI_2026_SPATIAL = ActionSpace(11259, LAYOUT_SPATIAL, 9, 139, ENCODING_2026)
KEISEI_2026 = ModelSpaces(ObservationSpace(50, 9, ENCODING_2026), KEISEI_2026_SPATIAL)


def model_spaces(model: nn.Module | Any) -> ModelSpaces:
    """The spaces ``model`` declares, else ones derived from its declared shapes."""
    declared = getattr(model, "keisei_spaces", None)
    if declared is None:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's wrapper
        declared = getattr(inner, "keisei_spaces", None) if inner is not None else None
    if isinstance(declared, ModelSpaces):
        return declared
    from keisei_core.introspect import model_shapes

    shapes = model_shapes(model)
    channels, board, _ = shapes.observation
    encoding = ENCODING_2025 if (channels, board) == (46, 9) else ENCODING_GENERIC
    name = ENCODING_2025 if (shapes.num_actions, board) == (13527, 9) else ENCODING_GENERIC
    return ModelSpaces(ObservationSpace(channels, board, encoding), ActionSpace(shapes.num_actions, LAYOUT_FLAT, board, None, name))


def observations_for(model: nn.Module | Any, batch_size: int, *, seed: int = 0, **kwargs: Any) -> torch.Tensor:
    """Observation-like inputs in the encoding ``model`` declares."""
    from keisei_core.observations import make_observations

    space = model_spaces(model).observation
    return make_observations(batch_size, space=space, seed=seed, **kwargs)


def legal_masks_for(model: nn.Module | Any, batch_size: int, *, seed: int = 0, **kwargs: Any) -> torch.Tensor:
    """Realistic legal masks over the action space ``model`` declares."""
    from keisei_core.observations import make_legal_masks

    return make_legal_masks(batch_size, space=model_spaces(model).actions, seed=seed, **kwargs)
