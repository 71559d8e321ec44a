"""The actor-critic interface: masking, sampling, evaluation and input errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.actor_critic import ActorCriticMixin, ActorCriticProtocol
from keisei_core.api import build_model
from keisei_core.errors import InputError
from keisei_core.observations import make_legal_masks, make_observations

NUM_ACTIONS = 40


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("actor-critic", conv_channels=2, num_actions=NUM_ACTIONS, board_size=5, input_channels=7)
    return net.eval()


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    batch = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 10_000))
    obs = make_observations(batch, 7, 5, seed=seed)
    rows = [draw(st.lists(st.booleans(), min_size=NUM_ACTIONS, max_size=NUM_ACTIONS).filter(any)) for _ in range(batch)]
    return obs, torch.tensor(rows, dtype=torch.bool)


def test_satisfies_protocol(model: torch.nn.Module) -> None:
    assert isinstance(model, ActorCriticProtocol)
    assert isinstance(model, ActorCriticMixin)


@settings(max_examples=60)
@given(data=batches(), seed=st.integers(0, 2**31 - 1))
def test_sampled_actions_are_always_legal(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], seed: int) -> None:
    obs, mask = data
    torch.manual_seed(seed)
    with torch.no_grad():
        action, log_prob, value = model.get_action_and_value(obs, mask)
    assert action.dtype == torch.long and action.shape == (obs.shape[0],)
    assert bool(mask.gather(1, action.unsqueeze(1)).all())
    assert torch.isfinite(log_prob).all() and (log_prob <= 0).all()
    assert value.shape == (obs.shape[0],)


@settings(max_examples=60)
@given(data=batches())
def test_deterministic_picks_best_legal_action(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    obs, mask = data
    with torch.no_grad():
        action, _, _ = model.get_action_and_value(obs, mask, deterministic=True)
        logits, _ = model(obs)
    best = logits.masked_fill(~mask, float("-inf")).max(dim=1).values
    assert torch.equal(logits.gather(1, action.unsqueeze(1)).squeeze(1), best)


@settings(max_examples=60)
@given(data=batches(), deterministic=st.booleans())
def test_evaluate_actions_agrees_with_sampling(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], deterministic: bool
) -> None:
    obs, mask = data
    with torch.no_grad():
        action, log_prob, value = model.get_action_and_value(obs, mask, deterministic=deterministic)
        log_prob2, entropy, value2 = model.evaluate_actions(obs, action, mask)
    torch.testing.assert_close(log_prob2, log_prob)
    torch.testing.assert_close(value2, value)
    assert (entropy >= -1e-6).all()
    single = mask.sum(dim=1) == 1
    assert torch.allclose(entropy[single], torch.zeros_like(entropy[single]), atol=1e-6)


def test_entropy_zero_for_single_legal_action(model: torch.nn.Module) -> None:
    obs = make_observations(3, 7, 5, seed=1)
    mask = torch.zeros(3, NUM_ACTIONS, dtype=torch.bool)
    mask[torch.arange(3), torch.tensor([0, 17, 39])] = True
    action, log_prob, _ = model.get_action_and_value(obs, mask)
    assert action.tolist() == [0, 17, 39]
    assert torch.allclose(log_prob, torch.zeros(3))
    _, entropy, _ = model.evaluate_actions(obs, action, mask)
    assert torch.allclose(entropy, torch.zeros(3))


def test_one_dimensional_mask_broadcasts(model: torch.nn.Module) -> None:
    obs = make_observations(4, 7, 5, seed=2)
    mask = torch.zeros(NUM_ACTIONS, dtype=torch.bool)
    mask[[3, 5]] = True
    action, _, _ = model.get_action_and_value(obs, mask)
    assert set(action.tolist()) <= {3, 5}


def test_row_without_legal_action_is_an_error_not_a_sample(model: torch.nn.Module) -> None:
    obs = make_observations(3, 7, 5)
    mask = make_legal_masks(3, NUM_ACTIONS, min_legal=2, max_legal=5)
    mask[1] = False
    with pytest.raises(InputError, match=r"legal_mask rows \[1\] have no legal action"):
        model.get_action_and_value(obs, mask)
    with pytest.raises(InputError, match="no legal action"):
        model.evaluate_actions(obs, torch.zeros(3, dtype=torch.long), mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"legal_mask": torch.ones(3, NUM_ACTIONS + 1, dtype=torch.bool)}, r"legal_mask must have shape \(3, 40\)"),
        ({"legal_mask": torch.ones(3, NUM_ACTIONS)}, "legal_mask must have dtype torch.bool"),
        ({"legal_mask": torch.ones(2, NUM_ACTIONS, dtype=torch.bool)}, "legal_mask must have shape"),
    ],
)
def test_bad_masks(model: torch.nn.Module, kwargs: dict[str, torch.Tensor], message: str) -> None:
    with pytest.raises(InputError, match=message):
        model.get_action_and_value(make_observations(3, 7, 5), **kwargs)


def test_bad_observations(model: torch.nn.Module) -> None:
    obs = make_observations(2, 7, 5)
    obs[1, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN or inf in rows \[1\]"):
        model.get_action_and_value(obs)
    with pytest.raises(InputError, match="must be 4-D"):
        model.get_action_and_value(obs[0])
    with pytest.raises(InputError, match="floating point"):
        model.get_action_and_value(obs.long())


def test_bad_actions(model: torch.nn.Module) -> None:
    obs = make_observations(2, 7, 5)
    with pytest.raises(InputError, match=r"actions must lie in \[0, 40\)"):
        model.evaluate_actions(obs, torch.tensor([0, 40]))
    with pytest.raises(InputError, match=r"actions must lie in \[0, 40\)"):
        model.evaluate_actions(obs, torch.tensor([-1, 3]))
    with pytest.raises(InputError, match=r"shape \(2,\)"):
        model.evaluate_actions(obs, torch.tensor([1, 2, 3]))
    with pytest.raises(InputError, match="integer tensor"):
        model.evaluate_actions(obs, torch.tensor([1.0, 2.0]))
    mask = torch.zeros(2, NUM_ACTIONS, dtype=torch.bool)
    mask[:, 0] = True
    with pytest.raises(InputError, match=r"actions in rows \[1\] are illegal"):
        model.evaluate_actions(obs, torch.tensor([0, 5]), mask)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_masked_logits_stay_finite_in_low_precision(model: torch.nn.Module, dtype: torch.dtype) -> None:
    obs = make_observations(4, 7, 5, seed=3)
    mask = make_legal_masks(4, NUM_ACTIONS, min_legal=1, max_legal=3)
    low = build_model("actor-critic", conv_channels=2, num_actions=NUM_ACTIONS, board_size=5, input_channels=7)
    low.load_state_dict(model.state_dict())
    low = low.to(dtype).eval()
    with torch.no_grad():
        action, log_prob, value = low.get_action_and_value(obs.to(dtype), mask)
        log_prob2, entropy, _ = low.evaluate_actions(obs.to(dtype), action, mask)
    assert bool(mask.gather(1, action.unsqueeze(1)).all())
    for tensor in (log_prob, value, log_prob2, entropy):
        assert torch.isfinite(tensor).all()
        assert tensor.dtype == torch.float32


def test_masked_logits_finite_under_bf16_autocast(model: torch.nn.Module) -> None:
    obs = make_observations(4, 7, 5, seed=4)
    mask = make_legal_masks(4, NUM_ACTIONS, min_legal=1, max_legal=3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        action, log_prob, _ = model.get_action_and_value(obs, mask)
        _, entropy, _ = model.evaluate_actions(obs, action, mask)
    assert torch.isfinite(log_prob).all() and torch.isfinite(entropy).all()
    assert bool(mask.gather(1, action.unsqueeze(1)).all())


def test_float64_models_keep_finite_masked_gradients(model: torch.nn.Module) -> None:
    wide = build_model("actor-critic", conv_channels=2, num_actions=NUM_ACTIONS, board_size=5, input_channels=7)
    wide.load_state_dict(model.state_dict())
    wide = wide.double()
    obs = make_observations(3, 7, 5, seed=6, dtype=torch.float64)
    mask = make_legal_masks(3, NUM_ACTIONS, min_legal=2, max_legal=6)
    action, log_prob, value = wide.get_action_and_value(obs, mask)
    log_prob2, entropy, value2 = wide.evaluate_actions(obs, action, mask)
    assert log_prob.dtype == torch.float64 and value.dtype == torch.float64
    (entropy.sum() + log_prob2.sum() + value2.sum()).backward()
    for parameter in wide.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
