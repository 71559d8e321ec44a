"""Hypothesis strategies for keisei models: observations, legal masks, model options.

Observations come from :func:`keisei_core.observations.make_observations`, so every
example has the real plane structure (one-hot piece planes, constant hand, side-to-move
and move-count planes, zero planes) for whatever channel count and board size is drawn;
hypothesis draws the shape, the seed and the board occupancy. Legal masks range from one
legal action per row to every action legal. Model options are drawn from the field types
and validators of a model's options class and kept small.

Every argument that sets a size accepts either a value or a strategy::

    from hypothesis import given
    from keisei_core.testing import strategies as ks

    @given(batch=ks.observation_batches(channels=46, board_size=9, num_actions=13527))
    def test_policy(batch):
        obs, masks = batch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis import assume
from hypothesis import strategies as st

from keisei_core.specs import ModelSpec
from keisei_core.testing.options import (
    SHAPE_OPTIONS,
    SMALL_INT,
    FieldRule,
    field_rules,
    int_range,
    is_valid,
)

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

__all__ = [
    "batch_sizes",
    "legal_masks",
    "model_options",
    "observation_batches",
    "observations",
    "seeds",
]


def _as_strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def seeds() -> st.SearchStrategy[int]:
    """Seeds for the input generators and torch's sampling."""
    return st.integers(0, 2**31 - 1)


def batch_sizes(max_size: int = 8) -> st.SearchStrategy[int]:
    """Batch sizes from 1 (the rollout case) to ``max_size``, with 1 drawn often."""
    return st.one_of(st.just(1), st.integers(1, max_size))


@st.composite
def observations(
    draw: st.DrawFn,
    *,
    batch_size: int | st.SearchStrategy[int] = batch_sizes(4),
    channels: int | st.SearchStrategy[int] = 46,
    board_size: int | st.SearchStrategy[int] = 9,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
) -> torch.Tensor:
    """Observation tensors ``(B, C, H, H)`` with the real Keisei plane structure.

    ``channels`` and ``board_size`` may be strategies, e.g. ``st.integers(1, 64)``: the
    plane layout scales with the channel count as in :mod:`keisei_core.observations`.
    """
    import torch

    from keisei_core.observations import make_observations

    batch = draw(_as_strategy(batch_size))
    planes = draw(_as_strategy(channels))
    board = draw(_as_strategy(board_size))
    # Empty, sparse, typical and full boards all occur in play (and in compilers' bugs).
    occupancy = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    return make_observations(
        batch,
        planes,
        board,
        seed=draw(seeds()),
        occupancy=occupancy,
        dtype=dtype or torch.float32,
        device=device,
    )


@st.composite
def legal_masks(
    draw: st.DrawFn,
    *,
    num_actions: int | st.SearchStrategy[int],
    batch_size: int | st.SearchStrategy[int] = batch_sizes(4),
    min_legal: int = 1,
    max_legal: int | None = None,
    device: str = "cpu",
) -> torch.Tensor:
    """Boolean masks ``(B, A)`` with between ``min_legal`` and ``max_legal`` (default: all)
    legal actions in each row; exactly one legal action and every action legal are drawn
    often, since both are where masking code breaks."""
    import torch

    from keisei_core.observations import make_legal_masks

    actions = draw(_as_strategy(num_actions))
    batch = draw(_as_strategy(batch_size))
    high = actions if max_legal is None else max(1, min(max_legal, actions))
    low = max(1, min(min_legal, high))
    counts = st.one_of(st.just(low), st.just(high), st.integers(low, high), st.integers(low, min(high, low + 8)))
    rows = []
    for _ in range(batch):
        count = draw(counts)
        rows.append(make_legal_masks(1, actions, seed=draw(seeds()), min_legal=count, max_legal=count))
    return torch.cat(rows).to(device) if rows else torch.zeros(0, actions, dtype=torch.bool, device=device)


@st.composite
def observation_batches(
    draw: st.DrawFn,
    *,
    channels: int | st.SearchStrategy[int] = 46,
    board_size: int | st.SearchStrategy[int] = 9,
    num_actions: int | st.SearchStrategy[int] = 13527,
    batch_size: int | st.SearchStrategy[int] = batch_sizes(4),
    min_legal: int = 1,
    max_legal: int | None = None,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(observations, legal_masks)`` of one batch size, ready for the PPO methods."""
    batch = draw(_as_strategy(batch_size))
    obs = draw(observations(batch_size=batch, channels=channels, board_size=board_size, dtype=dtype, device=device))
    masks = draw(
        legal_masks(num_actions=num_actions, batch_size=batch, min_legal=min_legal, max_legal=max_legal, device=device)
    )
    return obs, masks


def _int_values(rule: FieldRule, small: bool) -> st.SearchStrategy[int]:
    if rule.choices is not None:
        return st.sampled_from([c for c in rule.choices if isinstance(c, int)] or [rule.default])
    low, high = int_range(rule)
    if small:
        cap = max(low, SMALL_INT)
        high = cap if high is None else min(high, cap)
    elif high is None:
        high = max(low, rule.default if isinstance(rule.default, int) else low) * 2
    return st.integers(low, max(low, high))


def _float_values(rule: FieldRule) -> st.SearchStrategy[float]:
    if rule.choices is not None:
        return st.sampled_from(list(rule.choices))
    return st.floats(
        min_value=rule.low,
        max_value=rule.high,
        exclude_min=rule.low_open and rule.low is not None,
        exclude_max=rule.high_open and rule.high is not None,
        allow_nan=False,
        allow_infinity=False,
    )


def _field_values(rule: FieldRule, small: bool) -> st.SearchStrategy[Any]:
    values: st.SearchStrategy[Any]
    if rule.kind == "int":
        values = _int_values(rule, small)
    elif rule.kind == "float":
        values = _float_values(rule)
    elif rule.kind == "bool":
        values = st.booleans()
    elif rule.choices is not None:
        values = st.sampled_from(list(rule.choices))
    else:  # free text or an unknown type: the preset value is the only one known to make sense
        values = st.just(rule.default)
    if rule.optional:
        values = st.one_of(st.none(), values)
    return values


@st.composite
def model_options(
    draw: st.DrawFn,
    spec: ModelSpec,
    *,
    fixed: Mapping[str, Any] | None = None,
    keep: Sequence[str] = SHAPE_OPTIONS,
    small: bool = True,
) -> dict[str, Any]:
    """Option overrides for ``spec`` drawn from its typed options (a dict for ``build_model``).

    Each field is drawn from its type and its validators' bounds and choices; integers
    stay at most 8 when ``small`` (or the model's minimum, if larger). Fields named in
    ``keep`` (by default the shape options ``input_channels``, ``board_size``,
    ``num_actions``) stay at the preset, ``fixed`` pins values. A drawn set that the
    options class rejects (validators or cross-field rules in ``__attrs_post_init__``)
    is discarded, so every example builds.
    """
    pinned = dict(fixed or {})
    kept = set(keep)
    drawn: dict[str, Any] = {}
    for rule in field_rules(spec.options, spec.defaults):
        if rule.name in pinned:
            drawn[rule.name] = pinned[rule.name]
        elif rule.name in kept:
            continue
        else:
            drawn[rule.name] = draw(_field_values(rule, small), label=rule.name)
    assume(is_valid(spec, drawn))
    return drawn
