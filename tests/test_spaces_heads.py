"""Observation/action spaces as model metadata and the typed multi-head outputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.errors import InputError
from keisei_core.heads import (
    SCALAR_HEADS,
    WDL_SCORE_HEADS,
    OutputHeads,
    head_training_loss,
    read_outputs,
    scalar_value_from_wdl,
)
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.spaces import (
    KEISEI_2025,
    KEISEI_2026,
    ActionSpace,
    ObservationSpace,
    model_spaces,
)


def test_the_two_generations() -> None:
    assert KEISEI_2025.observation.shape == (46, 9, 9) and KEISEI_2025.actions.size == 13527
    assert KEISEI_2026.observation.shape == (50, 9, 9) and KEISEI_2026.actions.size == 11259
    assert KEISEI_2026.actions.spatial_shape == (9, 9, 139) and KEISEI_2025.actions.spatial_shape is None
    with pytest.raises(ValueError, match="has 50 planes"):
        ObservationSpace(46, 9, "keisei-2026")
    with pytest.raises(ValueError, match="size 100"):
        ActionSpace(100, "spatial", 9, 139)


@given(st.integers(0, 8), st.integers(0, 8), st.integers(0, 138))
def test_spatial_index_is_the_row_major_flattening(row: int, col: int, move: int) -> None:
    space = KEISEI_2026.actions
    planes = torch.arange(space.size).reshape(1, 9, 9, 139)
    flat = planes.flatten(1)
    assert int(flat[0, space.index(row, col, move)]) == int(planes[0, row, col, move])
    assert space.index(row, col, move) == (row * 9 + col) * 139 + move
    assert torch.equal(space.spatial_view(flat), planes)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**16))
def test_2026_observations_have_the_2026_planes(batch: int, seed: int) -> None:
    obs = make_observations(batch, space=KEISEI_2026.observation, seed=seed)
    assert obs.shape == (batch, 50, 9, 9)
    assert bool((obs[:, :28].sum(dim=1) <= 1).all()), "at most one piece per square"
    for plane in (*range(28, 44), *range(44, 49)):
        assert bool((obs[:, plane] == obs[:, plane, :1, :1]).all()), f"plane {plane} is not constant"
    repetition = obs[:, 44:48, 0, 0]
    assert bool((repetition.sum(dim=1) <= 1).all()), "repetition planes are exclusive"
    assert bool(((obs[:, 48] == 0) | (obs[:, 48] == 1)).all()) and bool((obs[:, 49] == 0).all())
    assert torch.equal(obs, make_observations(batch, 50, 9, seed=seed)), "50 planes default to the 2026 encoding"


def test_legal_masks_follow_the_declared_action_space() -> None:
    mask = make_legal_masks(3, space=KEISEI_2026.actions, seed=1)
    assert mask.shape == (3, 11259) and bool(mask.any(dim=1).all())


def test_undeclared_models_get_spaces_from_their_shapes() -> None:
    from keisei_core.api import build_model

    spaces = model_spaces(build_model("actor-critic"))
    assert spaces == KEISEI_2025


def test_wdl_scalar_and_typed_outputs() -> None:
    class Fake(torch.nn.Module):
        keisei_output_heads = WDL_SCORE_HEADS

    wdl = torch.tensor([[2.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    raw = (torch.zeros(2, 5), scalar_value_from_wdl(wdl), wdl, torch.tensor([0.5, -0.25]))
    out = read_outputs(Fake(), raw)
    assert out.value_wdl_logits is wdl and out.score_lead is not None
    assert list(out.heads()) == ["policy", "value", "value_wdl", "score"]
    p = wdl.softmax(-1)
    torch.testing.assert_close(out.value, p[:, 0] - p[:, 2])
    loss = head_training_loss(Fake(), raw)
    assert loss is not None and float(loss) > 0
    with pytest.raises(InputError, match="returned 2 outputs; its declared heads are"):
        read_outputs(Fake(), raw[:2])
    assert head_training_loss(torch.nn.Identity(), raw[:2]) is None
    assert read_outputs(torch.nn.Identity(), raw[:2]).value_wdl_logits is None


def test_head_names_are_checked() -> None:
    assert SCALAR_HEADS.value_kind == "scalar" and WDL_SCORE_HEADS.value_kind == "wdl"
    with pytest.raises(ValueError, match="distinct names"):
        OutputHeads(("value_wdl", "policy_aux"))
