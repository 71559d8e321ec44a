"""Policy-level validation of quantized strategies (precision ``int8``): the engine selects
it by the strategy's precision, judges KL / top-1 / value / legality per batch, reports
it, and falls back when a threshold is missed. Fake "quantizers" (forward wrappers that
round or shift outputs) keep these tests at a few seconds; the real int8 strategy is
tested in keisei-plugin-inductor."""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from keisei_core.api import build_model
from keisei_core.compile import add_forward_wrapper, compile_model
from keisei_core.compile.equivalence import make_check_inputs
from keisei_core.compile.policy_checks import (
    DEFAULT_POLICY_THRESHOLDS,
    PolicyThresholds,
    masked_kl,
    policy_metrics,
    resolve_policy_thresholds,
)
from keisei_core.errors import InputError
from keisei_core.introspect import model_shapes
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.specs import StrategyContext, StrategySpec

INT8 = DEFAULT_POLICY_THRESHOLDS["int8"]
ACTIONS = 30


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("actor-critic", conv_channels=4, num_actions=ACTIONS)
    # A fresh network's policy is almost uniform, where every check passes trivially;
    # scale the outputs up to the spread of a trained one (logits std ~ 2).
    obs = make_observations(64, *model_shapes(model).observation[:2], seed=5)
    with torch.no_grad():
        logits, _ = model(obs)
    scale = 2.0 / float(logits.std(dim=1).mean())
    return add_forward_wrapper(model, functools.partial(_scaled, scale=scale))


def _scaled(module: nn.Module, inner: Any, obs: torch.Tensor, *, scale: float) -> Any:
    logits, value = inner(obs)
    return logits * scale, value


def _rounded(module: nn.Module, inner: Any, obs: torch.Tensor, *, step: float, value_shift: float = 0.0) -> Any:
    # What a quantizer does to the outputs: values on a grid of `step`.
    logits, value = inner(obs)
    return torch.round(logits / step) * step, torch.round(value / step) * step + value_shift


def _fake_int8(step: float, value_shift: float = 0.0, name: str = "fake-int8") -> StrategySpec:
    def apply(model: nn.Module, context: StrategyContext) -> nn.Module:
        return add_forward_wrapper(model, functools.partial(_rounded, step=step, value_shift=value_shift))

    return StrategySpec(name, apply, devices={"cpu"}, dtypes={"float32"}, training=False, precision="int8")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _model()


def test_int8_precision_selects_the_policy_checks(model: nn.Module) -> None:
    result, report = compile_model(model, _fake_int8(step=1e-3), batch_sizes=(1, 8, 64))
    assert report.status == "compiled", report.summary()
    assert report.checks == () and report.tolerance is None and report.precision == "int8"
    assert report.policy_thresholds == INT8
    assert [(c.batch_size, c.metric) for c in report.policy_checks] == [
        (b, m) for b in (1, 8, 64, 3, 33) for m in ("kl", "top1", "value", "legal")  # + off-bucket sizes
    ]
    assert all(c.passed for c in report.policy_checks)
    assert "20/20 policy checks passed" in report.summary()
    assert result is not model
    data = report.to_dict()
    assert data["policy_thresholds"]["kl"] == INT8.kl and len(data["policy_checks"]) == 20


def test_a_coarse_grid_misses_the_thresholds_and_falls_back(model: nn.Module) -> None:
    result, report = compile_model(model, _fake_int8(step=1.5), batch_sizes=(8, 64))
    assert report.status == "fallback" and result is model
    assert report.reason is not None and "policy checks miss the int8 thresholds" in report.reason
    failed = {c.metric for c in report.policy_checks if not c.passed}
    assert {"kl", "top1"} <= failed, report.reason


def test_a_value_offset_is_caught_by_the_value_check(model: nn.Module) -> None:
    _, report = compile_model(model, _fake_int8(step=1e-3, value_shift=0.2), batch_sizes=(8,), extra_batch_sizes=())
    assert report.status == "fallback"
    assert [c.metric for c in report.policy_checks if not c.passed] == ["value"]
    assert "largest value error at batch 8 (eval): 0.2 > 0.05" in (report.reason or "")


def test_thresholds_can_be_given(model: nn.Module) -> None:
    loose = PolicyThresholds(kl=10.0, top1=0.0, value=10.0)
    _, report = compile_model(model, _fake_int8(step=1.5), batch_sizes=(8,), policy_thresholds=loose)
    assert report.status == "compiled" and report.policy_thresholds == loose
    assert resolve_policy_thresholds("int8", {"int8": loose}) == loose
    with pytest.raises(InputError, match="no policy thresholds for precision 'float32'"):
        resolve_policy_thresholds("float32")


def test_quantized_strategies_are_inference_only_in_the_report(model: nn.Module) -> None:
    _, report = compile_model(model, _fake_int8(step=1e-3), batch_sizes=(4,), training=True)
    assert report.status == "skipped" and "inference only" in (report.reason or "")
    assert report.policy_checks == ()


def test_precision_int8_is_a_valid_spec_but_not_a_dtype() -> None:
    spec = _fake_int8(1e-3)
    assert spec.precision == "int8"
    with pytest.raises(ValueError):
        StrategySpec("bad", spec.apply, precision="int4")


class _Illegal(nn.Module):
    """Picks action 0 whatever the mask says (a broken kernel could do no worse)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, obs: torch.Tensor) -> Any:
        return self.inner(obs)

    def get_action_and_value(self, obs: torch.Tensor, masks: torch.Tensor, deterministic: bool = False) -> Any:
        action, log_prob, value = self.inner.get_action_and_value(obs, masks, deterministic=deterministic)
        return torch.zeros_like(action), log_prob, value


def test_illegal_actions_fail_the_legality_check(model: nn.Module) -> None:
    data = make_check_inputs((16,), model_shapes(model).observation, ACTIONS, device="cpu", dtype=torch.float32, seed=3)[0]
    assert not bool(data.masks[:, 0].all())  # some rows forbid action 0
    found = policy_metrics(model.eval(), _Illegal(model), data, INT8)
    assert found["legal"] < 1.0
    assert policy_metrics(model, model, data, INT8) == {"kl": 0.0, "top1": 1.0, "value": 0.0, "legal": 1.0}


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 32),
    seed=st.integers(0, 10_000),
    shift=st.floats(-3.0, 3.0, allow_nan=False),
)
def test_kl_is_zero_for_a_shifted_policy_and_positive_otherwise(batch: int, seed: int, shift: float) -> None:
    # Softmax ignores a constant shift per row; any other change of legal logits moves it.
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, ACTIONS, generator=generator) * 2
    masks = make_legal_masks(batch, ACTIONS, seed=seed, min_legal=2, max_legal=ACTIONS)
    assert float(masked_kl(logits, logits + shift, masks).abs().max()) < 1e-9
    other = logits.clone()
    other[masks] += torch.randn(int(masks.sum()), generator=generator)
    kl = masked_kl(logits, other, masks)
    assert bool((kl > 0).all()) and bool(torch.isfinite(kl).all())
    # Illegal logits never count: changing them changes nothing.
    hidden = logits.masked_fill(~masks, 1e4)
    assert float(masked_kl(logits, hidden, masks).abs().max()) < 1e-9
    assert math.isfinite(float(kl.mean()))



def test_keisei_validate_prints_the_policy_checks(model: nn.Module) -> None:
    from keisei_core.cli.commands.validate import render_report

    _, report = compile_model(model, _fake_int8(step=1e-3, value_shift=0.2), batch_sizes=(8,), extra_batch_sizes=())
    text = render_report(report)
    assert "policy metric" in text and "3/4 policy checks passed" in text
    value_row = next(line for line in text.splitlines() if line.split()[1:2] == ["value"])
    assert "at most 0.05" in value_row and "NO" in value_row
