"""keisei_core.timing is the one timing primitive: its A/B interleaving (and why it is not
torch.utils.benchmark.Timer), paired ratios, and the callers that must use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from keisei_core.timing import measure, measure_interleaved, paired_ratio, time_calls

ROOT = Path(__file__).resolve().parents[1]


class DriftingMachine:
    """A fake clock, and a 1 ms call whose cost grows 5 % per second of (fake) time: a
    machine warming up, or a neighbour's job starting. Every reading is deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += 1e-3 * (1 + 0.05 * self.now)


SETTINGS = {"warmup_seconds": 0.2, "min_samples": 5, "max_samples": 10_000, "time_budget_seconds": 2.0}


def test_sequential_timing_biases_identical_callables_interleaving_does_not() -> None:
    """The measured reason keisei times A/B with its own interleaved loop (docs/benchmarking.md):
    ``torch.utils.benchmark.Timer.blocked_autorange`` times one callable at a time, so on a
    drifting machine two *identical* callables come out about 10 % apart; rounds of shuffled
    order give both the same drift."""
    from torch.utils.benchmark import Timer

    machine = DriftingMachine()
    medians = {}
    for name in ("a", "b"):
        timer = Timer(stmt="fn()", globals={"fn": machine.work}, timer=machine)
        medians[name] = timer.blocked_autorange(min_run_time=2.0).median
    assert medians["b"] / medians["a"] > 1.08  # the same code, "9.6 % slower"

    machine.now = 0.0
    one_after_other = {
        name: measure(machine.work, clock=machine, target_iqr_ratio=None, **SETTINGS) for name in ("a", "b")
    }
    assert one_after_other["b"].median / one_after_other["a"].median > 1.08  # keisei's own loop alike

    machine.now = 0.0
    both = measure_interleaved(
        {"a": machine.work, "b": machine.work}, clock=machine, target_iqr_ratio=None, **SETTINGS
    )
    assert both["b"].median / both["a"].median == pytest.approx(1.0, abs=0.002)
    assert paired_ratio(both["b"], both["a"]).median == pytest.approx(1.0, abs=0.002)


def test_no_stability_target_samples_until_the_budget_and_warmup_calls_are_a_minimum() -> None:
    machine = DriftingMachine()
    steady = {"warmup_seconds": 0.0, "min_samples": 3, "max_samples": 10_000, "time_budget_seconds": 0.05}
    calls = []

    def call() -> None:
        calls.append(machine.now)
        machine.now += 1e-3

    stats = measure(call, clock=machine, target_iqr_ratio=None, min_block_seconds=0.0, warmup_calls=4, **steady)
    assert stats.stop_reason == "budget" and stats.n >= 50  # perfectly stable, yet not stopped early
    assert stats.warmup_samples == 4
    stable = measure(call, clock=machine, target_iqr_ratio=0.05, min_block_seconds=0.0, **steady)
    assert stable.stop_reason == "stable" and stable.n == 3


def test_paired_ratio_pairs_rounds_and_refuses_unpaired_samples() -> None:
    from keisei_core.stats import summarize

    a, b = summarize([2.0, 4.0, 6.0]), summarize([1.0, 2.0, 2.0])
    ratio = paired_ratio(a, b)
    assert list(ratio.samples) == [2.0, 2.0, 3.0] and ratio.median == 2.0 and ratio.unit == "x"
    with pytest.raises(ValueError, match="same rounds"):
        paired_ratio(a, summarize([1.0, 2.0]))


def test_time_calls_syncs_at_both_ends() -> None:
    machine = DriftingMachine()
    log: list[str] = []

    def sync() -> None:
        log.append("sync")

    def call() -> None:
        log.append("call")
        machine.now += 0.5

    assert time_calls(call, 2, clock=machine, sync=sync) == pytest.approx(0.5)
    assert log == ["sync", "call", "call", "sync"]
    with pytest.raises(ValueError, match="at least one call"):
        time_calls(call, 0)


def test_the_speed_check_measures_with_the_primitive() -> None:
    from keisei_core.compile.speed import compare_speed

    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
    slower = nn.Sequential(*(nn.Linear(16, 16) for _ in range(8)))
    eager.train()
    check = compare_speed(eager, slower, torch.randn(4, 16), min_samples=5, budget_seconds=0.2, warmup_calls=2)
    assert eager.training  # modes restored
    assert check.batch_size == 4 and check.samples >= 5
    assert check.ratio_q1 is not None and check.ratio_median is not None and check.ratio_q3 is not None
    assert check.ratio_q1 <= check.ratio_median <= check.ratio_q3
    assert check.eager_ms > 0 and check.compiled_ms > 0


@pytest.mark.parametrize(
    "path",
    [
        "keisei_core/compile/speed.py",
        "keisei_core/bench/builtin_probes.py",
        "plugins/keisei-plugin-fused-se/keisei_plugin_fused_se/unit_timing.py",
        "plugins/keisei-plugin-fused-se/keisei_plugin_fused_se/bench.py",
    ],
)
def test_timing_callers_read_no_clock_themselves(path: str) -> None:
    # One timing primitive: these modules time through keisei_core.timing, never a loop of their own.
    source = (ROOT / path).read_text(encoding="utf-8")
    assert "perf_counter" not in source and "time.time()" not in source and "statistics.quantiles" not in source
