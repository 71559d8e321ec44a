"""compile_model: PPO methods run compiled code, state_dict keys stay eager's, validation in
eval and train mode, fallback with reasons, skips, the speed guard, the report.

Strategies here compile with counting TorchDynamo backends (no Inductor): the engine's
logic is tested in seconds; the Inductor strategies are tested in their plugin.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.api import build_model
from keisei_core.compile import (
    CompileFailedError,
    CompileReport,
    Tolerance,
    add_forward_wrapper,
    compile_in_place,
    compile_model,
    compiled_call,
)
from keisei_core.compile.counters import warm_from_cache
from keisei_core.config import converter, unstructure
from keisei_core.errors import KeiseiError
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.specs import StrategyContext, StrategySpec


class CountingBackend:
    """A TorchDynamo backend that runs the captured graph eagerly and counts compiles and runs."""

    def __init__(self) -> None:
        self.compiles = 0
        self.runs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        self.compiles += 1

        def run(*args: Any) -> Any:
            self.runs += 1
            return gm.forward(*args)

        return run


class TinyNet(ActorCriticMixin, nn.Module):
    """conv -> BatchNorm -> ReLU -> heads: small, with running statistics to disturb."""

    observation_shape = (6, 3, 3)
    num_actions = 12

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(dropout)
        self.policy = nn.Linear(36, 12)
        self.value = nn.Linear(36, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.drop(torch.relu(self.bn(self.conv(obs)))).flatten(1)
        return self.policy(h), self.value(h).squeeze(-1)


def counting_strategy(name: str = "counting", **kwargs: Any) -> tuple[StrategySpec, CountingBackend]:
    backend = CountingBackend()
    spec = StrategySpec(name, lambda model, context: compile_in_place(model, backend=backend), **kwargs)
    return spec, backend


def wrapper_strategy(name: str, wrapper: Any, **kwargs: Any) -> StrategySpec:
    return StrategySpec(name, lambda model, context: add_forward_wrapper(model, wrapper), kind="transform", **kwargs)


def tiny(seed: int = 0, **kwargs: Any) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kwargs)


@pytest.fixture(scope="module")
def compiled_tiny() -> tuple[TinyNet, nn.Module, CompileReport, CountingBackend]:
    spec, backend = counting_strategy()
    model = tiny()
    compiled, report = compile_model(model, spec, batch_sizes=(1, 4, 32))
    return model, compiled, report, backend


def test_ppo_methods_run_compiled_code(compiled_tiny: Any) -> None:
    model, compiled, report, backend = compiled_tiny
    assert report.status == "compiled", report.reason
    assert compiled is not model and type(compiled) is TinyNet
    obs, masks = make_observations(5, 6, 3, seed=3), make_legal_masks(5, 12, seed=3)
    compiled.eval()
    for method in ("get_action_and_value", "evaluate_actions"):
        before = backend.runs
        with torch.no_grad():
            if method == "get_action_and_value":
                compiled.get_action_and_value(obs, masks, deterministic=True)
            else:
                compiled.evaluate_actions(obs, masks.float().argmax(-1), masks)
        assert backend.runs == before + 1, f"{method} did not run the compiled graph"
    before = backend.runs
    model.eval().get_action_and_value(obs, masks)
    assert backend.runs == before, "the eager model must stay eager"


def test_state_dict_keys_are_eager_keys_and_weights_load_both_ways(compiled_tiny: Any) -> None:
    model, compiled, _report, _backend = compiled_tiny
    assert list(compiled.state_dict()) == list(model.state_dict())
    assert not any("_orig_mod" in key for key in compiled.state_dict())
    other = tiny(seed=11).eval()
    compiled.load_state_dict(other.state_dict())  # eager weights into the compiled model
    obs = make_observations(3, 6, 3, seed=5)
    compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(obs), other(obs))
    fresh = TinyNet().eval()
    fresh.load_state_dict(compiled.state_dict())  # compiled weights into an eager model
    with torch.no_grad():
        torch.testing.assert_close(fresh(obs), other(obs))
    compiled.load_state_dict(model.state_dict())


def test_report_records_every_check_and_serialises(compiled_tiny: Any) -> None:
    _model, _compiled, report, _backend = compiled_tiny
    assert report.modes == ("eval", "train")
    assert report.batch_sizes == (1, 4, 32, 3, 33)  # declared, then the off-bucket sizes
    assert report.declared_batch_sizes == (1, 4, 32)
    assert [s.batch_size for s in report.speeds] == [1, 4, 32]
    assert report.sampling is not None and report.sampling.passed and report.sampling.draws >= 512
    assert [w.how for w in report.weights] == ["load_state_dict", "in-place", "optimizer-step", "restore"]
    assert all(w.passed and w.outcome == "followed" for w in report.weights)
    outputs = {(c.mode, c.method, c.output) for c in report.checks}
    for mode in ("eval", "train"):
        for method, output in [
            ("forward", "logits"), ("forward", "value"), ("get_action_and_value", "action"),
            ("get_action_and_value", "log_prob"), ("evaluate_actions", "log_prob"),
            ("evaluate_actions", "entropy"), ("evaluate_actions", "value"),
        ]:
            assert (mode, method, output) in outputs
    assert ("train", "forward", "buffers") in outputs and ("train", "backward", "grad") in outputs
    assert {c.batch_size for c in report.checks} == {1, 3, 4, 32, 33}
    assert all(c.passed and c.dtype == "float32" for c in report.checks)
    assert report.compile_seconds is not None and report.compile_seconds > 0
    assert report.graphs >= 1 and report.recompiles == report.graphs - 1
    data = json.loads(json.dumps(report.to_dict()))
    assert data["status"] == "compiled" and len(data["checks"]) == len(report.checks)
    assert converter.structure(unstructure(report), CompileReport) == report


def test_batch_sizes_do_not_cause_a_recompile_storm() -> None:
    spec, backend = counting_strategy()
    sizes = (1, 2, 3, 5, 8, 13, 16, 40, 64)
    compiled, report = compile_model(tiny(), spec, batch_sizes=sizes, training=False)
    assert report.status == "compiled", report.reason
    # batch 1 is specialised, and CPU convolutions pick another backend from batch 16 on.
    assert report.graphs <= 3 and report.recompiles <= 2, report
    call = compiled_call(compiled)
    assert call is not None and call.graph_count() == report.graphs == backend.compiles
    compiled.eval()
    with torch.no_grad():
        for batch in (6, 7, 9, 31, 100):
            compiled(make_observations(batch, 6, 3))
    assert call.graph_count() == report.graphs, "new batch sizes compiled new graphs"


def test_validation_leaves_both_models_as_found() -> None:
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec, _ = counting_strategy()
    compiled, report = compile_model(model, spec, batch_sizes=(2, 8))
    assert report.modes == ("eval", "train") and report.status == "compiled"
    assert model.training and compiled.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed by validation"
        assert torch.equal(compiled.state_dict()[key], before[key])
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is None for p in compiled.parameters())


def _shift_logits(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    logits, value = inner(obs)
    return logits + 1e-3, value


def test_a_mismatch_falls_back_to_the_eager_model_with_the_reason() -> None:
    model = tiny()
    compiled, report = compile_model(model, wrapper_strategy("shift", _shift_logits), batch_sizes=(1, 4))
    assert compiled is model
    assert report.status == "fallback"
    assert "differ from eager" in (report.reason or "") and "forward.logits at batch 1 (eval)" in (report.reason or "")
    assert report.failed_checks and not report.ok
    with pytest.raises(CompileFailedError) as info:
        compile_model(model, wrapper_strategy("shift", _shift_logits), batch_sizes=(1,), fallback=False)
    assert info.value.report.status == "failed"
    assert "strategy 'shift' failed" in str(info.value)
    loose = Tolerance(atol=1e-2, rtol=0.0)
    compiled, report = compile_model(model, wrapper_strategy("shift", _shift_logits), batch_sizes=(1,), tolerances=loose)
    assert report.status == "compiled" and report.tolerance == loose


def _wrong_in_train_mode(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    # Uses running statistics in train mode, as a broken compiled BatchNorm would.
    if module.training:
        module.eval()
        try:
            return inner(obs)
        finally:
            module.train()
    return inner(obs)


def test_train_mode_is_validated_when_the_strategy_trains() -> None:
    model = tiny()
    _compiled, report = compile_model(model, wrapper_strategy("bn", _wrong_in_train_mode), batch_sizes=(4,))
    assert report.status == "fallback"
    assert "(train)" in (report.reason or "")
    _compiled, report = compile_model(model, wrapper_strategy("bn", _wrong_in_train_mode), batch_sizes=(4,), training=False)
    assert report.status == "compiled" and report.modes == ("eval",)
    inference = wrapper_strategy("bn", _wrong_in_train_mode, training=False)
    _compiled, report = compile_model(model, inference, batch_sizes=(4,))
    assert report.modes == ("eval",) and report.status == "compiled"


def _boom(model: nn.Module, context: StrategyContext) -> nn.Module:
    raise RuntimeError("backend exploded\nwith a second line")


def _raise_on_call(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    raise ValueError("kernel missing")


def test_exceptions_fall_back_with_the_stage_and_one_line() -> None:
    model = tiny()
    _compiled, report = compile_model(model, StrategySpec("boom", _boom), batch_sizes=(1,))
    assert report.status == "fallback"
    assert report.reason == "applying 'boom' raised RuntimeError: backend exploded with a second line"
    _compiled, report = compile_model(model, wrapper_strategy("calls", _raise_on_call), batch_sizes=(1,))
    assert report.reason == "the first call raised ValueError: kernel missing"


def test_a_strategy_that_renames_state_dict_keys_is_rejected() -> None:
    # torch.compile(model) is exactly Keisei's defect: '_orig_mod.' keys, eager PPO methods.
    spec = StrategySpec("wrap", lambda model, context: torch.compile(model, backend="eager"))
    model = tiny()
    compiled, report = compile_model(model, spec, batch_sizes=(1,))
    assert compiled is model and report.status == "fallback"
    assert "changed the state_dict keys" in (report.reason or "") and "_orig_mod" in (report.reason or "")


def test_unsupported_devices_dtypes_and_training_are_skipped() -> None:
    model = tiny()
    cuda_only, _ = counting_strategy(devices={"cuda"})
    returned, report = compile_model(model, cuda_only)
    assert returned is model and report.status == "skipped" and not report.checks
    assert report.reason == "strategy 'counting' runs on cuda only, not cpu"
    fp32_only, _ = counting_strategy(dtypes={"float32"})
    _returned, report = compile_model(model, fp32_only, dtype="bfloat16")
    assert report.status == "skipped" and "float32 models only, not bfloat16" in (report.reason or "")
    inference, _ = counting_strategy(training=False)
    _returned, report = compile_model(model, inference, training=True)
    assert report.status == "skipped" and "inference only" in (report.reason or "")
    if not torch.cuda.is_available():
        anywhere, _ = counting_strategy()
        _returned, report = compile_model(model, anywhere, device="cuda")
        assert report.status == "skipped" and report.reason == "CUDA is not available on this machine"


def _slow(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    time.sleep(0.02)  # far above eager's time for this model, even on a busy machine
    return inner(obs)


def test_speed_guard_falls_back_when_not_faster() -> None:
    model = tiny()
    compiled, report = compile_model(
        model, wrapper_strategy("slow", _slow), batch_sizes=(1, 4), guard="faster", guard_seconds=0.1
    )
    assert compiled is model and report.status == "fallback"
    assert report.speed is not None and report.speed.batch_size == 4 and report.speed.samples >= 5
    assert report.speed.compiled_ms > report.speed.eager_ms and report.speed.speedup < 1
    assert [s.batch_size for s in report.speeds] == [1, 4]  # every declared size is timed
    # The reason names the first declared size that was not faster (on a loaded machine one
    # descheduled eager call can make batch 1 look slow enough, so either size may be named).
    named = re.match(r"not faster than eager at batch (\d+): ", report.reason or "")
    assert named is not None, report.reason
    first_slow = next(s for s in report.speeds if not s.faster)
    assert int(named.group(1)) == first_slow.batch_size
    with pytest.raises(KeiseiError, match="guard must be"):
        compile_model(model, wrapper_strategy("slow", _slow), guard="fastest")


def test_model_dtype_conversion_leaves_the_original_alone() -> None:
    model = tiny()
    spec, _ = counting_strategy()
    compiled, report = compile_model(model, spec, dtype="bfloat16", batch_sizes=(2,), training=False)
    assert report.status == "compiled", report.reason
    assert report.dtype == report.precision == "bfloat16"
    assert next(compiled.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32


def test_dropout_models_are_validated_in_eval_mode_only() -> None:
    spec, _ = counting_strategy()
    _compiled, report = compile_model(tiny(dropout=0.5), spec, batch_sizes=(2,))
    assert report.modes == ("eval",) and "train_mode_not_validated" in report.notes


def test_models_without_declared_shapes_need_example_obs() -> None:
    class Bare(TinyNet):
        observation_shape = None  # type: ignore[assignment]

    spec, _ = counting_strategy()
    with pytest.raises(KeiseiError, match="observation_shape"):
        compile_model(Bare(), spec)
    _compiled, report = compile_model(Bare(), spec, example_obs=make_observations(2, 6, 3), batch_sizes=(1,), training=False)
    assert report.status == "compiled"


def _record_warm(model: nn.Module, context: StrategyContext) -> nn.Module:
    context.record("warm_start", True)
    context.record("artifact", context.cache_dir / "x.bin")
    return model


def test_warm_start_comes_from_the_strategy_or_the_caches() -> None:
    _compiled, report = compile_model(tiny(), StrategySpec("warm", _record_warm), batch_sizes=(1,))
    assert report.warm_start is True and report.notes["artifact"].endswith("x.bin")
    assert warm_from_cache({}) is None
    assert warm_from_cache({"fxgraph_cache_hit": 3}) is True
    assert warm_from_cache({"autograd_cache_hit": 2, "autograd_cache_miss": 0}) is True
    assert warm_from_cache({"fxgraph_cache_hit": 3, "fxgraph_cache_miss": 1}) is False


def test_composition_by_name_through_the_plugin_host() -> None:
    model = build_model("actor-critic", conv_channels=2, num_actions=20)
    _compiled, report = compile_model(model, "eager", batch_sizes=(1, 3))
    assert report.status == "compiled" and report.strategy == "eager" and report.model == "actor-critic"
    assert report.model_options["num_actions"] == 20
    assert all(c.max_abs_diff == 0 for c in report.checks)


@settings(max_examples=4)
@given(
    conv_channels=st.integers(1, 4),
    num_actions=st.integers(1, 40),
    board_size=st.integers(2, 5),
    input_channels=st.integers(1, 8),
    extra_batch=st.integers(2, 12),
    seed=st.integers(0, 2**16),
)
def test_compiled_equals_eager_on_random_baseline_configs(
    conv_channels: int, num_actions: int, board_size: int, input_channels: int, extra_batch: int, seed: int
) -> None:
    torch.manual_seed(seed)
    model = build_model(
        "actor-critic", conv_channels=conv_channels, num_actions=num_actions,
        board_size=board_size, input_channels=input_channels,
    )
    spec, backend = counting_strategy()
    compiled, report = compile_model(model, spec, batch_sizes=(1, extra_batch), seed=seed)
    assert report.status == "compiled", report.reason
    assert backend.compiles >= 1 and backend.runs > 0
    assert list(compiled.state_dict()) == list(copy.deepcopy(model).state_dict())


class Cancelling(TinyNet):
    """Loses float32 precision to cancellation unless ``precise`` (a plain attribute) is set."""

    precise = False

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, value = super().forward(obs)
        if self.precise:
            return (logits.double() * 3.3 + 1e4 - 1e4).to(logits.dtype), value
        return (logits * 3.3 + 1e4) - 1e4, value


def _make_precise(model: nn.Module, context: StrategyContext) -> nn.Module:
    model.precise = True  # type: ignore[assignment]
    return model


def _noisy(module: nn.Module, inner: Any, obs: torch.Tensor) -> Any:
    logits, value = inner(obs)
    return logits + 4e-3 * torch.randn_like(logits), value


def test_a_float64_referee_decides_when_eager_is_the_less_accurate() -> None:
    torch.manual_seed(0)
    model = Cancelling()
    _compiled, report = compile_model(model, StrategySpec("precise", _make_precise), batch_sizes=(8,), training=False)
    assert report.status == "compiled", report.reason
    refereed = [c for c in report.checks if c.referee_eager_error is not None]
    assert refereed, "eager's cancellation error should exceed the float32 tolerance"
    for check in refereed:
        assert check.passed and check.referee_compiled_error is not None
        assert check.referee_compiled_error < check.referee_eager_error
    # A strategy worse than eager is not rescued by the referee.
    torch.manual_seed(0)
    _compiled, report = compile_model(TinyNet(), wrapper_strategy("noisy", _noisy), batch_sizes=(8,), training=False)
    assert report.status == "fallback"
    failed = report.failed_checks[0]
    assert failed.referee_compiled_error is not None and failed.referee_eager_error is not None
    assert failed.referee_compiled_error > 2 * failed.referee_eager_error
