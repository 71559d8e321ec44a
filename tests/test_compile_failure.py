"""The compile report's structured ``failure``: why a strategy was declined or fell back, as
data (kind, check, batch size, measured vs allowed), and the report at the file boundary
(``report_data`` / ``report_from_data`` through the project's converter)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.bench.strategies import StrategyUnsupported, check_support
from keisei_core.compile import add_forward_wrapper, compile_model
from keisei_core.compile.composition import build_composition
from keisei_core.compile.report import (
    CompileReport,
    EquivalenceCheck,
    Failure,
    SpeedCheck,
    report_data,
    report_from_data,
)
from keisei_core.errors import InputError, KeiseiError
from keisei_core.specs import StrategyContext, StrategySpec
from keisei_core.statuses import CompileStatus, FailureKind
from keisei_core.testing.cases import CompileOutcome, declined


class TinyNet(ActorCriticMixin, nn.Module):
    observation_shape = (6, 3, 3)
    num_actions = 12

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 4, 3, padding=1)
        self.policy = nn.Linear(36, 12)
        self.value = nn.Linear(36, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv(obs)).flatten(1)
        return self.policy(h), self.value(h).squeeze(-1)


def _shift_logits(module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    logits, value = inner(obs, *args, **kwargs)
    return logits + 0.5, value  # wrong by a known amount


def _shifted(model: nn.Module, context: StrategyContext) -> nn.Module:
    return add_forward_wrapper(model, _shift_logits)


def _slowed(module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    torch.mm(torch.ones(300, 300), torch.ones(300, 300))  # costs time, changes nothing
    return inner(obs, *args, **kwargs)


def _compile(spec: StrategySpec, **kwargs: Any) -> CompileReport:
    torch.manual_seed(0)
    kwargs.setdefault("speed_seconds", 0.0)
    _model, report = compile_model(TinyNet().eval(), spec, batch_sizes=(1, 4), extra_batch_sizes=(), **kwargs)
    return report


def _raises(error: BaseException) -> StrategySpec:
    def apply(model: nn.Module, context: StrategyContext) -> nn.Module:
        raise error

    return StrategySpec("raiser", apply)


def test_a_strategy_that_raises_a_keisei_error_declines_on_purpose() -> None:
    report = _compile(_raises(KeiseiError("the model declares no repeated blocks")))
    assert report.status == CompileStatus.FALLBACK
    assert report.failure == Failure(FailureKind.APPLY_ERROR, check="applying 'raiser'", strategy="raiser",
                                     error="KeiseiError", user_error=True)
    assert report.failure.declined
    outcome = CompileOutcome(None, None, report.status, report.reason, report,
                             build_composition([_raises(KeiseiError("x"))]))
    assert declined(outcome)


def test_a_compiler_error_is_not_a_decline() -> None:
    report = _compile(_raises(RuntimeError("backend exploded")))
    assert report.failure is not None and report.failure.kind is FailureKind.APPLY_ERROR
    assert report.failure.error == "RuntimeError" and not report.failure.user_error
    assert not report.failure.declined


def test_a_mismatch_names_the_check_the_batch_and_the_figures() -> None:
    report = _compile(StrategySpec("shifted", _shifted))
    failure = report.failure
    assert report.status == CompileStatus.FALLBACK and failure is not None
    assert failure.kind is FailureKind.MISMATCH
    assert failure.check is not None and failure.batch_size in (1, 4) and failure.mode == "eval"
    assert failure.measured is not None and failure.allowed is not None and failure.measured > failure.allowed
    assert failure.check.split(".")[0] in ("forward", "get_action_and_value", "evaluate_actions")


def test_unsupported_is_checked_once_with_one_wording() -> None:
    spec = StrategySpec("gpu-only", lambda model, context: model, devices=frozenset({"cuda"}))
    report = _compile(spec)
    assert report.status == CompileStatus.SKIPPED
    assert report.failure == Failure(FailureKind.UNSUPPORTED_DEVICE, check="device", strategy="gpu-only")
    with pytest.raises(StrategyUnsupported) as raised:
        check_support(None, build_composition([spec]), device="cpu", dtype="float32", training=False)  # type: ignore[arg-type]
    assert str(raised.value) == report.reason and raised.value.failure == report.failure
    inference = StrategySpec("inference", lambda model, context: model, training=False)
    with pytest.raises(StrategyUnsupported, match="does not support training") as raised:
        check_support(None, build_composition([inference]), device="cpu", dtype="float32", training=True)  # type: ignore[arg-type]
    assert raised.value.failure is not None and raised.value.failure.kind is FailureKind.UNSUPPORTED_MODE


def test_the_speed_guard_records_measured_and_allowed_milliseconds() -> None:
    report = _compile(StrategySpec("slow", lambda model, context: add_forward_wrapper(model, _slowed)), guard="faster", guard_seconds=0.2)
    failure = report.failure
    assert failure is not None and failure.kind is FailureKind.SPEED and failure.check == "speed"
    assert failure.measured is not None and failure.allowed is not None and failure.measured >= failure.allowed


_finite_or_not = st.one_of(st.floats(allow_nan=False), st.just(math.inf), st.just(-math.inf))
_failures = st.builds(
    Failure,
    kind=st.sampled_from(list(FailureKind)),
    check=st.none() | st.text(max_size=12),
    strategy=st.none() | st.sampled_from(["inductor", "bf16"]),
    batch_size=st.none() | st.integers(1, 512),
    mode=st.none() | st.sampled_from(["eval", "train"]),
    measured=st.none() | _finite_or_not,
    allowed=st.none() | _finite_or_not,
    error=st.none() | st.sampled_from(["KeiseiError", "RuntimeError"]),
    user_error=st.booleans(),
)
_speeds = st.builds(
    SpeedCheck,
    batch_size=st.integers(1, 512),
    samples=st.integers(1, 50),
    eager_ms=st.floats(0.0, 1e3),
    compiled_ms=st.floats(0.0, 1e3),
    eager_iqr_ms=st.floats(0.0, 10.0),
    compiled_iqr_ms=st.floats(0.0, 10.0),
    ratio_q1=st.none() | st.floats(0.0, 10.0),
    ratio_q3=st.none() | st.floats(0.0, 10.0),
)


@settings(max_examples=60, deadline=None)
@given(failure=st.none() | _failures, speeds=st.lists(_speeds, max_size=3),
       status=st.sampled_from(list(CompileStatus)), diff=_finite_or_not)
def test_report_data_is_strict_json_and_reads_back_equal(
    failure: Failure | None, speeds: list[SpeedCheck], status: CompileStatus, diff: float
) -> None:
    check = EquivalenceCheck(1, "eval", "float32", "forward", "logits", diff, diff, 1e-5, 1e-4, False)
    report = CompileReport("counting", status, reason="why", failure=failure, checks=(check,), speeds=tuple(speeds),
                           speed=speeds[-1] if speeds else None, batch_sizes=(1, 4), modes=("eval",))
    data = json.loads(json.dumps(report_data(report), allow_nan=False))
    assert data["status"] == str(status)
    for entry, speed in zip(data["speeds"], speeds, strict=True):
        assert entry["verdict"] == speed.verdict  # what a reader of the file wants beside the fields
    assert report_from_data(data) == report


def test_data_that_is_not_a_report_is_one_error_naming_where() -> None:
    with pytest.raises(InputError, match=r"^results.json: cells\[0\]: not a compile report"):
        report_from_data({"strategy": "x", "status": "maybe"}, "results.json: cells[0]")


def test_the_failure_summary_reads_as_one_line() -> None:
    failure = Failure(FailureKind.MISMATCH, check="forward.logits", batch_size=4, mode="eval", measured=0.5,
                      allowed=1e-5)
    assert failure.summary() == "mismatch: forward.logits, batch 4 (eval), measured 0.5 vs allowed 1e-05"
    declined_here = Failure(FailureKind.APPLY_ERROR, check="applying 'x'", strategy="x", error="InputError",
                            user_error=True)
    assert declined_here.summary() == "apply-error: applying 'x', strategy 'x', raised InputError (a KeiseiError)"


def test_a_results_file_holds_the_report_as_data_and_reads_it_back_typed(tmp_path: Path) -> None:
    from keisei_core.bench.results import CellRecord, Results, ResultsError, load_results

    failure = Failure(FailureKind.MISMATCH, check="forward.logits", batch_size=4, mode="eval", measured=math.inf,
                      allowed=1e-5)
    check = EquivalenceCheck(4, "eval", "float32", "forward", "logits", math.inf, math.inf, 1e-5, 1e-4, False)
    report = CompileReport("counting", CompileStatus.FAILED, reason="why", failure=failure, checks=(check,))
    cell = CellRecord(model="m", model_label="m", model_options={}, strategy="counting", probe="latency",
                      batch_size=4, device="cpu", dtype="float32", status="failed", reason="why",
                      compile_report=report)
    path = tmp_path / "results.json"
    Results(run={}, manifest={}, cells=[cell], path=path).save()
    data = json.loads(path.read_text())
    assert data["cells"][0]["compile_report"]["failure"]["kind"] == "mismatch"
    assert data["cells"][0]["compile_report"]["checks"][0]["max_abs_diff"] is None  # written as null
    again = load_results(path).cells[0].compile_report
    assert isinstance(again, CompileReport) and again.failure is not None
    assert again.failure.kind is FailureKind.MISMATCH and again.failure.measured is None  # optional: null stays None
    assert math.isnan(again.checks[0].max_abs_diff)  # a required float read back from null
    data["cells"][0]["compile_report"] = {"strategy": "x", "status": "maybe"}
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"cell m/counting/b4: compile_report: not a compile report"):
        load_results(path)
