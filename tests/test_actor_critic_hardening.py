"""Issue 16: whatever the network outputs, an action is never illegal; bad logits and
observations that do not fit the model are one InputError line."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.api import build_model
from keisei_core.errors import InputError
from keisei_core.observations import make_observations

NUM_ACTIONS = 30
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


class FixedLogits(ActorCriticMixin, torch.nn.Module):
    """A network whose policy output is given (what a broken or hostile network returns)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=logits.dtype))
        self.observation_shape = (3, 2, 2)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits + self.weight * 0, torch.zeros(obs.shape[0], dtype=self.logits.dtype)


def _mask(batch: int) -> torch.Tensor:
    mask = torch.zeros(batch, NUM_ACTIONS, dtype=torch.bool)
    mask[:, 5:9] = True  # four legal actions per row
    return mask


def _obs(batch: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(batch, 3, 2, 2, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("deterministic", [False, True])
def test_finite_minimum_legal_logits_never_give_illegal_actions(dtype: torch.dtype, deterministic: bool) -> None:
    # Legal logits at the dtype's finite minimum, illegal ones above them: the old masking
    # (fill with that same minimum) tied them and sampled ~98 % illegal actions.
    logits = torch.zeros(400, NUM_ACTIONS, dtype=dtype)
    logits[:, 5:9] = torch.finfo(dtype).min
    model = FixedLogits(logits)
    mask = _mask(400)
    torch.manual_seed(0)
    action, log_prob, _ = model.get_action_and_value(_obs(400, dtype), mask, deterministic=deterministic)
    assert bool(mask.gather(1, action.unsqueeze(1)).all())
    assert torch.allclose(log_prob, torch.full_like(log_prob, -torch.log(torch.tensor(4.0)).item()), atol=1e-4)
    log_prob2, entropy, _ = model.evaluate_actions(_obs(400, dtype), action, mask)
    assert torch.isfinite(entropy).all() and torch.allclose(log_prob2, log_prob)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("-inf"), float("nan"), float("inf")])
@pytest.mark.parametrize("deterministic", [False, True])
def test_non_finite_legal_logits_are_an_input_error_naming_rows(dtype: torch.dtype, bad: float, deterministic: bool) -> None:
    logits = torch.zeros(4, NUM_ACTIONS, dtype=dtype)
    logits[[1, 3], 5:9] = bad  # every legal action of rows 1 and 3
    model = FixedLogits(logits)
    with pytest.raises(InputError, match=r"policy logits are NaN or \+inf on legal actions, or -inf on all of them, in rows \[1, 3\]"):
        model.get_action_and_value(_obs(4, dtype), _mask(4), deterministic=deterministic)
    # evaluate_actions computes a training loss: the divergence shows as NaN there.
    log_prob, entropy, _ = model.evaluate_actions(_obs(4, dtype), torch.full((4,), 5), _mask(4))
    assert torch.isnan(log_prob[[1, 3]]).all() and torch.isfinite(log_prob[[0, 2]]).all()
    assert torch.isfinite(entropy[[0, 2]]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_nan_or_inf_legal_logit_is_an_error_without_a_mask_too(dtype: torch.dtype) -> None:
    for bad in (float("nan"), float("inf")):
        logits = torch.zeros(3, NUM_ACTIONS, dtype=dtype)
        logits[2, 7] = bad
        with pytest.raises(InputError, match=r"in rows \[2\]"):
            FixedLogits(logits).get_action_and_value(_obs(3, dtype))
        with pytest.raises(InputError, match=r"in rows \[2\]"):
            FixedLogits(logits).get_action_and_value(_obs(3, dtype), _mask(3))


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    values=st.lists(
        st.sampled_from([0.0, 1.0, -1.0, 1e4, -1e4, float("-inf"), float("nan"), float("inf"), "min", "max"]),
        min_size=NUM_ACTIONS, max_size=NUM_ACTIONS,
    ),
    seed=st.integers(0, 2**16),
    deterministic=st.booleans(),
)
def test_any_logits_either_legal_action_or_input_error(
    dtype: torch.dtype, values: list[float | str], seed: int, deterministic: bool
) -> None:
    info = torch.finfo(dtype)
    row = [info.min if v == "min" else info.max if v == "max" else v for v in values]
    logits = torch.tensor([row] * 64, dtype=torch.float32).to(dtype)
    mask = _mask(64)
    torch.manual_seed(seed)
    try:
        action, log_prob, _ = FixedLogits(logits).get_action_and_value(_obs(64, dtype), mask, deterministic=deterministic)
    except InputError as exc:
        assert "\n" not in str(exc)
        legal = logits[0, 5:9].float()
        assert bool(torch.isnan(legal).any() | torch.isposinf(legal).any() | torch.isneginf(legal).all())
        return
    assert bool(mask.gather(1, action.unsqueeze(1)).all())
    assert torch.isfinite(log_prob).all()


def test_legal_minus_inf_on_some_actions_gives_them_probability_zero() -> None:
    logits = torch.zeros(500, NUM_ACTIONS)
    logits[:, 5] = float("-inf")
    torch.manual_seed(1)
    action, log_prob, _ = FixedLogits(logits).get_action_and_value(_obs(500, torch.float32), _mask(500))
    assert set(action.tolist()) <= {6, 7, 8} and set(action.tolist()) == {6, 7, 8}
    assert torch.allclose(log_prob, torch.full_like(log_prob, -torch.log(torch.tensor(3.0)).item()))


def test_sampling_follows_the_policy() -> None:
    # The inverse-CDF sampler draws each legal action with its probability.
    logits = torch.log(torch.tensor([[0.0, 0.1, 0.2, 0.0, 0.7]]).clamp_min(1e-30)).expand(20000, 5).contiguous()
    mask = torch.tensor([False, True, True, False, True])
    torch.manual_seed(2)
    model = FixedLogits(logits)
    model.observation_shape = (3, 2, 2)
    action, _, _ = model.get_action_and_value(_obs(20000, torch.float32), mask)
    counts = torch.bincount(action, minlength=5).float() / 20000
    assert counts[0] == 0 and counts[3] == 0
    assert torch.allclose(counts[[1, 2, 4]], torch.tensor([0.1, 0.2, 0.7]), atol=0.015)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return build_model("actor-critic", conv_channels=2, num_actions=NUM_ACTIONS, board_size=5, input_channels=7).eval()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 46, 5, 5), r"observations of shape \(2, 46, 5, 5\) do not fit ActorCritic: expected \(B, 7, 5, 5\)"),
        ((2, 7, 9, 9), r"expected \(B, 7, 5, 5\) \(channels, board, board\), got \(B, 7, 9, 9\)"),
        ((2, 7, 5, 4), r"got \(B, 7, 5, 4\)"),
    ],
)
def test_wrong_observation_shape_is_one_line_before_the_network(net: torch.nn.Module, shape: tuple[int, ...], message: str) -> None:
    for call in (lambda o: net.get_action_and_value(o), lambda o: net.evaluate_actions(o, torch.zeros(2, dtype=torch.long))):
        with pytest.raises(InputError, match=message) as info:
            call(torch.zeros(shape))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_wrong_observation_dtype_is_one_line(net: torch.nn.Module, dtype: torch.dtype) -> None:
    with pytest.raises(InputError, match=rf"observations have dtype {dtype} but ActorCritic computes in torch.float32: expected torch.float32, got {dtype}"):
        net.get_action_and_value(make_observations(2, 7, 5).to(dtype))


def test_dtype_check_follows_conversions_and_allows_autocast() -> None:
    model = build_model("actor-critic", conv_channels=2, num_actions=NUM_ACTIONS, board_size=5, input_channels=7).eval()
    obs = make_observations(2, 7, 5)
    model.get_action_and_value(obs)
    model = model.to(torch.bfloat16)
    model.get_action_and_value(obs.to(torch.bfloat16))
    with pytest.raises(InputError, match=r"computes in torch\.bfloat16"):
        model.get_action_and_value(obs)
    model = model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.get_action_and_value(obs.to(torch.bfloat16))  # autocast casts inputs itself


def test_models_stay_picklable_and_copies_independent_after_ppo_calls() -> None:
    # The declared-input cache once lived in the module as a weakref: pickle failed after
    # the first PPO call and deepcopy shared the original's parameter.
    import copy
    import pickle

    from keisei_core.observations import make_legal_masks

    model = build_model("actor-critic")
    obs = make_observations(2, 46, 9)
    masks = make_legal_masks(2, 13527)
    model.get_action_and_value(obs, masks)
    revived = pickle.loads(pickle.dumps(model))
    twin = copy.deepcopy(model).double()
    revived.get_action_and_value(obs, masks)
    twin.get_action_and_value(obs.double(), masks)
    with pytest.raises(InputError, match=r"expected torch\.float64"):
        twin.get_action_and_value(obs, masks)
