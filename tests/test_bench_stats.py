"""Statistics and timing loops on synthetic timings (a fake clock; no torch, no sleeping)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keisei_core.stats import Statistics, is_stable, quantile, summarize, thin
from keisei_core.timing import measure, measure_interleaved

finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=60))
def test_summary_matches_numpy_and_orders_quantiles(values: list[float]) -> None:
    stats = summarize(values)
    assert stats.n == len(values)
    for q, got in [(0.1, stats.p10), (0.25, stats.q1), (0.5, stats.median), (0.75, stats.q3), (0.9, stats.p90)]:
        assert got == pytest.approx(float(np.quantile(values, q)), rel=1e-9, abs=1e-12)
    assert stats.minimum <= stats.p10 <= stats.q1 <= stats.median <= stats.q3 <= stats.p90 <= stats.maximum
    assert stats.mean == pytest.approx(float(np.mean(values)), rel=1e-9)
    if len(values) > 1:
        assert stats.std == pytest.approx(float(np.std(values, ddof=1)), rel=1e-6, abs=1e-12)


def test_outliers_are_counted_not_dropped() -> None:
    values = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 5.0, 0.2]
    stats = summarize(values)
    assert stats.n == len(values)
    assert stats.outliers_high == 1 and stats.outliers_low == 1
    assert stats.maximum == 5.0 and stats.minimum == 0.2
    # The mean includes the outliers (nothing silently removed).
    assert stats.mean == pytest.approx(sum(values) / len(values))


def test_noise_warning_only_when_spread_is_large() -> None:
    quiet = summarize([1.0, 1.01, 0.99, 1.0, 1.02])
    loud = summarize([1.0, 1.5, 0.6, 1.3, 0.8])
    assert not quiet.noisy and quiet.noise_warning() is None
    assert loud.noisy
    warning = loud.noise_warning()
    assert warning is not None and "IQR" in warning and "\n" not in warning


def test_round_trip_and_mapping() -> None:
    stats = summarize([0.002, 0.0021, 0.0019, 0.002, 0.0022], stop_reason="stable")
    again = Statistics.from_dict(stats.to_dict())
    assert again == stats
    rate = stats.mapped(lambda s: 64 / s, "samples/s")
    assert rate.median == pytest.approx(64 / stats.median)
    assert rate.unit == "samples/s" and rate.stop_reason == "stable"
    ms = stats.scaled(1e3, "ms")
    assert ms.median == pytest.approx(2.0) and ms.iqr_ratio == pytest.approx(stats.iqr_ratio)


def test_quantile_and_thin_edges() -> None:
    assert quantile([3.0], 0.5) == 3.0
    with pytest.raises(ValueError):
        quantile([], 0.5)
    with pytest.raises(ValueError):
        summarize([1.0, math.nan])
    kept = thin(list(range(2000)), 512)
    assert len(kept) == 512 and kept == sorted(kept) and kept[0] == 0
    assert is_stable([1.0, 1.0, 1.0], 0.01) and not is_stable([1.0, 2.0, 3.0], 0.1)


class FakeClock:
    """A clock that only moves when the timed function 'runs' for a chosen duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _workload(clock: FakeClock, durations: list[float], log: list[str] | None = None, name: str = ""):
    it = iter(durations)

    def fn() -> None:
        clock.now += next(it)
        if log is not None:
            log.append(name)

    return fn


def _settings(**overrides: float) -> dict[str, float]:
    base = {
        "warmup_seconds": 0.05,
        "min_samples": 5,
        "max_samples": 50,
        "time_budget_seconds": 10.0,
        "target_iqr_ratio": 0.05,
    }
    base.update(overrides)
    return base


def test_stable_timings_stop_early_and_first_call_is_warmup() -> None:
    clock = FakeClock()
    # A 1 s "compile" on the first call, then steady 10 ms calls.
    fn = _workload(clock, [1.0] + [0.01] * 10_000)
    stats = measure(fn, clock=clock, **_settings())  # type: ignore[arg-type]
    assert stats.stop_reason == "stable"
    assert stats.n == 5  # min_samples reached while stable
    assert stats.median == pytest.approx(0.01)
    assert stats.maximum < 1.0  # the compile never became a sample
    assert stats.warmup_samples >= 7


def test_noisy_timings_run_until_budget() -> None:
    clock = FakeClock()
    rng = random.Random(1)
    fn = _workload(clock, [0.01 * rng.choice([1.0, 3.0]) for _ in range(100_000)])
    stats = measure(fn, clock=clock, **_settings(time_budget_seconds=0.5, max_samples=10_000))  # type: ignore[arg-type]
    assert stats.stop_reason == "budget"
    assert stats.noisy
    assert stats.n >= 5


def test_max_samples_bounds_sampling() -> None:
    clock = FakeClock()
    rng = random.Random(2)
    fn = _workload(clock, [0.01 * rng.choice([1.0, 2.0]) for _ in range(100_000)])
    stats = measure(fn, clock=clock, **_settings(max_samples=8, time_budget_seconds=1e9))  # type: ignore[arg-type]
    assert stats.stop_reason == "max_samples" and stats.n == 8


def test_short_calls_are_grouped_into_blocks() -> None:
    clock = FakeClock()
    fn = _workload(clock, [1e-4] * 100_000)
    stats = measure(fn, clock=clock, **_settings())  # type: ignore[arg-type]
    assert stats.calls_per_sample == 50  # 5 ms blocks of 0.1 ms calls
    assert stats.median == pytest.approx(1e-4)
    per_call = measure(_workload(clock, [1e-4] * 100_000), clock=clock, min_block_seconds=0.0, **_settings())  # type: ignore[arg-type]
    assert per_call.calls_per_sample == 1


def test_interleaved_rounds_shuffle_order_and_pair_samples() -> None:
    clock = FakeClock()
    log: list[str] = []
    rng = random.Random(3)
    fns = {
        "a": _workload(clock, [0.01 * rng.uniform(0.9, 1.5) for _ in range(100_000)], log, "a"),
        "b": _workload(clock, [0.02 * rng.uniform(0.9, 1.5) for _ in range(100_000)], log, "b"),
    }
    result = measure_interleaved(
        fns, clock=clock, seed=0, **_settings(warmup_seconds=0.0, time_budget_seconds=0.5, min_block_seconds=0.0)  # type: ignore[arg-type]
    )
    assert result["a"].n == result["b"].n  # paired by round
    assert result["b"].median > result["a"].median
    rounds = [tuple(log[i : i + 2]) for i in range(len(log) - 2 * result["a"].n, len(log), 2)]
    firsts = {r[0] for r in rounds}
    assert firsts == {"a", "b"}, "the baseline must not always run first"


def test_statistics_data_adds_the_derived_figures_and_reads_back_without_them() -> None:
    import json

    import attrs

    stats = summarize([0.002, 0.0021, 0.0019, 0.002, 0.0022, 0.01], stop_reason="stable", warmup_samples=2)
    data = stats.to_dict()
    assert list(data) == [a.name for a in attrs.fields(Statistics)] + ["iqr", "iqr_ratio", "noisy"]
    assert data["samples"] == list(stats.samples) and data["iqr"] == stats.iqr
    assert data["iqr_ratio"] == stats.iqr_ratio and data["noisy"] is stats.noisy
    assert Statistics.from_dict(json.loads(json.dumps(data))) == stats
    assert Statistics.from_dict({**data, "key_from_a_later_version": 1}) == stats
    flat = summarize([0.0, 0.0, 0.0])
    flat_data = flat.to_dict()
    assert flat_data["iqr_ratio"] is None and flat_data["noisy"] is True  # inf is no JSON number
    assert Statistics.from_dict(flat_data) == flat
