"""Strategies that are wrong on purpose, one per hole compile_model used to let through.

Each is wrong in one way only, and right everywhere the old validation looked:
- a sampler that ignores the legal mask (or the distribution) only when deterministic=False;
- outputs wrong only at batch sizes other than the declared ones;
- weights snapshotted at apply time (stale after load_state_dict or an optimizer step);
- float16 outputs from a float32 model (values within tolerance, dtype not eager's);
- a strategy twice as slow as eager (compiled, but the report says slower; the guard falls back).
No Inductor here: wrappers and instance methods, so the suite takes seconds.
"""

from __future__ import annotations

import copy
import functools
import time
import types
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin, masked_log_probs
from keisei_core.compile import add_forward_wrapper, compile_model
from keisei_core.compile.engine import OFF_BUCKET_BATCH_SIZES, off_bucket_sizes
from keisei_core.compile.sampling import ALPHA, chi_square_sf
from keisei_core.errors import InputError
from keisei_core.specs import StrategyContext, StrategySpec


class WideNet(ActorCriticMixin, nn.Module):
    """Small body, 600 actions (masks leave 20-300 legal), logits spread like a trained policy's."""

    observation_shape = (4, 3, 3)
    num_actions = 600

    def __init__(self, scale: float = 4.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.policy = nn.Linear(36, 600)
        self.value = nn.Linear(36, 1)
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.bn(self.conv(obs))).flatten(1)
        return self.scale * self.policy(h), self.value(h).squeeze(-1)


def wide(seed: int = 0, scale: float = 4.0) -> WideNet:
    torch.manual_seed(seed)
    return WideNet(scale)


FAST = {"speed_seconds": 0.0, "training": False}


# --- 1. the stochastic path -----------------------------------------------------------


def _sampler(model: nn.Module, kind: str) -> Any:
    original = model.get_action_and_value

    def get_action_and_value(self: nn.Module, obs: torch.Tensor, legal_mask: torch.Tensor | None = None,
                             deterministic: bool = False) -> Any:
        if deterministic:
            return original(obs, legal_mask, deterministic=True)
        logits, value = self(obs)
        masked, log_probs = masked_log_probs(logits, legal_mask)
        if kind == "ignores-mask":
            _, sample_from = masked_log_probs(logits, None)
        elif kind == "flat":  # twice the temperature (and the right log-probability reported)
            _, sample_from = masked_log_probs(logits / 2, legal_mask)
        else:  # "argmax": never samples at all
            action = masked.argmax(-1)
            return action, log_probs.gather(-1, action[:, None])[:, 0], value
        action = torch.multinomial(sample_from.exp(), 1)[:, 0]
        return action, log_probs.gather(-1, action[:, None])[:, 0], value

    model.get_action_and_value = types.MethodType(get_action_and_value, model)  # type: ignore[method-assign]
    return model


def sampler_strategy(kind: str) -> StrategySpec:
    return StrategySpec(f"sampler-{kind}", lambda model, context: _sampler(model, kind), kind="transform")


@pytest.mark.parametrize(("kind", "says"), [
    ("ignores-mask", "sampled actions are illegal"),
    ("argmax", "do not follow eager's distribution"),
    ("flat", "do not follow eager's distribution"),
])
def test_a_sampler_wrong_only_when_sampling_is_caught(kind: str, says: str) -> None:
    # scale 8: the flat sampler is 0.20 (total variation, mean over rows) off eager's policy
    model = wide(scale=8.0)
    returned, report = compile_model(model, sampler_strategy(kind), **FAST)
    assert report.status == "fallback" and returned is model
    assert all(c.passed for c in report.checks), "the deterministic checks cannot see it"
    assert report.sampling is not None and not report.sampling.passed
    assert says in (report.reason or "")
    if kind == "ignores-mask":
        assert report.sampling.illegal > report.sampling.draws // 2
    else:
        assert report.sampling.illegal == 0 and report.sampling.p_value < ALPHA


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 8.0), batch=st.integers(2, 40))
def test_a_correct_sampler_passes_the_sampling_test(seed: int, scale: float, batch: int) -> None:
    # Equivalence claim: the mixin's own sampler, on copies of eager, at any seed and spread.
    _model, report = compile_model(wide(seed, scale), StrategySpec("same", lambda m, c: m), batch_sizes=(1, batch),
                                   seed=seed, **FAST)
    assert report.status == "compiled", report.reason
    assert report.sampling is not None and report.sampling.illegal == 0
    assert report.sampling.draws >= 512 and report.sampling.p_value >= ALPHA


def test_chi_square_tail_matches_known_values() -> None:
    # P(chi2_8 >= 15.507) = 0.05 and P(chi2_8 >= 26.124) = 0.001 (standard tables).
    assert chi_square_sf(15.507, 8) == pytest.approx(0.05, abs=2e-4)
    assert chi_square_sf(26.124, 8) == pytest.approx(0.001, abs=2e-5)
    assert chi_square_sf(0.0, 8) == 1.0


# --- 2. every shape bucket ------------------------------------------------------------


def _right_only_at(sizes: tuple[int, ...], module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    logits, value = inner(obs)
    if obs.shape[0] in sizes:
        return logits, value
    return logits + 0.31, value


@settings(max_examples=5, deadline=None)
@given(declared=st.lists(st.integers(1, 70), min_size=1, max_size=4, unique=True))
def test_a_strategy_right_only_at_the_declared_sizes_is_caught(declared: list[int]) -> None:
    sizes = tuple(declared)
    spec = StrategySpec("declared-only", lambda m, c: add_forward_wrapper(m, functools.partial(_right_only_at, sizes)),
                        kind="transform")
    _model, report = compile_model(wide(), spec, batch_sizes=sizes, **FAST)
    assert report.status == "fallback"
    assert set(report.batch_sizes) - set(sizes), "off-bucket sizes are always validated"
    failed = {c.batch_size for c in report.failed_checks}
    assert failed and not failed & set(sizes)


def test_off_bucket_sizes_avoid_the_declared_ones() -> None:
    assert off_bucket_sizes((1, 8, 64), OFF_BUCKET_BATCH_SIZES) == (3, 33)
    assert off_bucket_sizes((3, 33), OFF_BUCKET_BATCH_SIZES) == (5, 35)
    assert off_bucket_sizes((1, 256), ()) == ()


# --- 3. weight updates ----------------------------------------------------------------


def _run_snapshot(module: nn.Module, inner: Any, obs: torch.Tensor, *, holder: dict[str, nn.Module]) -> Any:
    snapshot = holder["model"]
    snapshot.train(module.training)
    return type(snapshot).forward(snapshot, obs)


def _snapshotting(model: nn.Module, context: StrategyContext, *, follow_load: bool = False) -> nn.Module:
    holder = {"model": copy.deepcopy(model)}
    add_forward_wrapper(model, functools.partial(_run_snapshot, holder=holder))
    if follow_load:
        def resnapshot(module: nn.Module, _keys: Any) -> None:
            holder["model"] = copy.deepcopy(module)
            holder["model"].__dict__.pop("forward", None)  # the class forward, not the wrapper

        model.register_load_state_dict_post_hook(resnapshot)
    holder["model"].__dict__.pop("forward", None)
    return model


@pytest.mark.parametrize("frozen", [False, True])
def test_a_strategy_that_snapshots_the_weights_is_caught(frozen: bool) -> None:
    spec = StrategySpec("snapshot", _snapshotting, kind="transform", training=False, frozen_weights=frozen)
    model = wide()
    returned, report = compile_model(model, spec, **FAST)
    assert report.status == "fallback" and returned is model
    assert all(c.passed for c in report.checks) and report.sampling is not None and report.sampling.passed
    assert report.weights[0].how == "load_state_dict" and report.weights[0].outcome == "stale"
    assert "after load_state_dict the compiled model was stale" in (report.reason or "")


def test_following_load_but_not_in_place_changes_needs_frozen_weights() -> None:
    apply = functools.partial(_snapshotting, follow_load=True)
    undeclared = StrategySpec("reload", apply, kind="transform", training=False)
    _model, report = compile_model(wide(), undeclared, **FAST)
    assert report.status == "fallback"
    assert [(w.how, w.outcome) for w in report.weights][:2] == [("load_state_dict", "followed"), ("in-place", "stale")]
    declared = StrategySpec("reload", apply, kind="transform", training=False, frozen_weights=True)
    _compiled, report = compile_model(wide(), declared, **FAST)
    assert report.status == "compiled", report.reason
    assert report.frozen_weights and [w.how for w in report.weights] == ["load_state_dict", "restore"]


def _rejecting(model: nn.Module, context: StrategyContext) -> nn.Module:
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def forward(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
        current = module.state_dict()
        if any(not torch.equal(current[k], v) for k, v in state.items()):
            raise InputError("weights changed after compiling; compile again")
        return inner(obs)

    return add_forward_wrapper(model, forward)


def test_a_frozen_strategy_may_reject_new_weights_but_not_an_undeclared_one() -> None:
    frozen = StrategySpec("rejects", _rejecting, kind="transform", training=False, frozen_weights=True)
    _model, report = compile_model(wide(), frozen, **FAST)
    assert report.status == "compiled", report.reason
    assert [(w.how, w.outcome) for w in report.weights] == [("load_state_dict", "rejected"), ("restore", "followed")]
    plain = StrategySpec("rejects", _rejecting, kind="transform", training=False)
    _model, report = compile_model(wide(), plain, **FAST)
    assert report.status == "fallback" and "frozen_weights=True" in (report.reason or "")


# --- 4. output dtype and device ---------------------------------------------------------


def _half_outputs(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    logits, value = inner(obs)
    return logits.half(), value.half()


@pytest.mark.parametrize("model_name", ["wide", "actor-critic"])
def test_float16_outputs_from_a_float32_model_are_caught(model_name: str) -> None:
    from keisei_core.api import build_model

    model = wide(scale=0.5) if model_name == "wide" else build_model("actor-critic", conv_channels=2, num_actions=40)
    spec = StrategySpec("half-out", lambda m, c: add_forward_wrapper(m, _half_outputs), kind="transform")
    _model, report = compile_model(model, spec, **FAST)
    assert report.status == "fallback"
    assert "forward.logits" in (report.reason or "") and "dtype float16, eager's is float32" in (report.reason or "")


# --- 5. speed -------------------------------------------------------------------------


def _twice_as_slow(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    start = time.perf_counter()
    out = inner(obs)
    # eager's own time again, and never less than 50 ms: slower even on a busy machine
    time.sleep(max(time.perf_counter() - start, 0.05))
    return out


def test_a_slower_strategy_is_reported_slower_and_the_guard_falls_back() -> None:
    spec = StrategySpec("slow", lambda m, c: add_forward_wrapper(m, _twice_as_slow), kind="transform")
    _compiled, report = compile_model(wide(), spec, batch_sizes=(1, 8), training=False, speed_seconds=0.2)
    assert report.status == "compiled"  # without a guard, slower is reported, not refused
    assert [s.batch_size for s in report.speeds] == [1, 8]
    assert all(s.verdict == "slower" and s.speedup < 1 for s in report.speeds)
    assert report.to_dict()["speeds"][0]["verdict"] == "slower"
    model = wide()
    returned, report = compile_model(model, spec, batch_sizes=(1, 8), training=False, guard="faster",
                                     guard_seconds=0.2)
    assert report.status == "fallback" and returned is model
    assert (report.reason or "").startswith("not faster than eager at batch 1")
