"""Synthetic inputs look like real Keisei observations and legal masks."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.observations import PlaneLayout, make_legal_masks, make_observations


def test_real_layout_of_46_planes() -> None:
    obs = make_observations(32, seed=5)
    assert obs.shape == (32, 46, 9, 9) and obs.dtype == torch.float32
    pieces = obs[:, :28]
    assert set(pieces.unique().tolist()) <= {0.0, 1.0}
    assert (pieces.sum(dim=1) <= 1).all(), "at most one piece per square"
    assert pieces.sum() > 0
    for plane in range(28, 44):  # hands, side to move, move count: constant planes
        flat = obs[:, plane].flatten(1)
        assert (flat == flat[:, :1]).all()
    assert set(obs[:, 42, 0, 0].unique().tolist()) <= {0.0, 1.0}
    assert (obs[:, 43] < 1).all()
    assert (obs[:, 44:] == 0).all()


def test_same_seed_same_batch() -> None:
    assert torch.equal(make_observations(4, seed=3), make_observations(4, seed=3))
    assert not torch.equal(make_observations(4, seed=3), make_observations(4, seed=4))


@settings(max_examples=50)
@given(channels=st.integers(1, 80), board=st.integers(1, 19), batch=st.integers(1, 5))
def test_any_channel_count_and_board(channels: int, board: int, batch: int) -> None:
    layout = PlaneLayout.for_channels(channels)
    assert 1 <= layout.pieces <= channels and layout.pieces + layout.hands <= channels
    obs = make_observations(batch, channels, board, seed=channels)
    assert obs.shape == (batch, channels, board, board)
    assert torch.isfinite(obs).all()
    assert (obs[:, : layout.pieces].sum(dim=1) <= 1).all()


@settings(max_examples=50)
@given(
    batch=st.integers(1, 6),
    actions=st.integers(1, 2000),
    low=st.integers(1, 50),
    span=st.integers(0, 400),
)
def test_masks_have_the_requested_number_of_legal_actions(batch: int, actions: int, low: int, span: int) -> None:
    mask = make_legal_masks(batch, actions, min_legal=low, max_legal=low + span, seed=batch)
    assert mask.dtype == torch.bool and mask.shape == (batch, actions)
    counts = mask.sum(dim=1)
    assert (counts >= min(low, actions)).all()
    assert (counts <= min(low + span, actions)).all()


def test_default_masks_are_realistic() -> None:
    counts = make_legal_masks(64).sum(dim=1)
    assert counts.min() >= 20 and counts.max() <= 300
