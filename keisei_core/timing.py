"""The one timing primitive: warm up until stable, then sample adaptively (one callable
or several interleaved).

Shared by every measurement of keisei: the bench probes (``context.time`` and
``context.time_interleaved``), the speed check of ``compile_model``
(:mod:`keisei_core.compile.speed`) and the fused-SE plugin's tools (through
:mod:`keisei_core.plugin`). It sits in the foundation layer, torch-free (numpy for the
quantiles), so the compile layer can use it without importing the bench layer.
docs/benchmarking.md says why it is not ``torch.utils.benchmark.Timer`` (interleaving).

What the loops do, and why (after torch.utils.benchmark's ``blocked_autorange`` and pyperf):
- Warm-up makes one call (compilation, allocator growth: never a sample), then runs the
  callable until at least ``warmup_seconds`` passed *and* two successive windows of
  per-call times agree within 10 %. It is capped at three times ``warmup_seconds`` after
  the first call, so a drifting cell cannot hang the run; the warm-up count is recorded.
- Calls shorter than :data:`MIN_BLOCK_SECONDS` are grouped into blocks so timer resolution
  and loop overhead stay negligible; a sample is the mean call time of one block.
- Sampling stops when there are at least ``min_samples`` and the IQR/median is under
  ``target_iqr_ratio`` (``stable``), the time budget is spent (``budget``), or
  ``max_samples`` is reached. Nothing is dropped (see :mod:`keisei_core.stats`).
- ``sync`` (e.g. ``torch.cuda.synchronize``) runs before the clock is read at both ends
  of a block, so asynchronous GPU work is inside the measured time.
- :func:`measure_interleaved` times several callables in rounds whose order is shuffled
  every round (never baseline-always-first), so drift (thermal, other processes) hits
  every contender alike; sample ``i`` of every contender comes from round ``i``, so
  :func:`paired_ratio` can pair them.
- ``target_iqr_ratio=None`` never stops on stability (the speed check samples until its
  budget); ``warmup_calls`` sets a minimum number of warm-up calls.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from keisei_core.stats import Statistics, is_stable, quantile, summarize

MIN_BLOCK_SECONDS = 0.005
WARMUP_WINDOW = 3
WARMUP_AGREEMENT = 0.10
WARMUP_CAP_FACTOR = 3.0

Clock = Callable[[], float]


def _no_sync() -> None:
    return None


def time_calls(
    fn: Callable[[], Any],
    calls: int = 1,
    *,
    clock: Clock = time.perf_counter,
    sync: Callable[[], None] | None = None,
) -> float:
    """Mean seconds per call over ``calls`` back-to-back calls of ``fn``, with ``sync``
    (e.g. ``torch.cuda.synchronize``) before the clock is read at both ends: the block
    every loop here is made of, and the one way to time a single (first) call."""
    if calls < 1:
        raise ValueError(f"time_calls needs at least one call, got {calls}")
    wait = sync or _no_sync
    wait()
    start = clock()
    for _ in range(calls):
        fn()
    wait()
    return (clock() - start) / calls


class _Timed:
    """One callable with its clock, sync and block size."""

    def __init__(
        self, fn: Callable[[], Any], clock: Clock, sync: Callable[[], None], min_block: float
    ) -> None:
        self.fn = fn
        self.min_block = min_block
        self.clock = clock
        self.sync = sync
        self.calls_per_sample = 1
        self.warmup_samples = 0
        self.samples: list[float] = []

    def block(self, calls: int) -> float:
        return time_calls(self.fn, calls, clock=self.clock, sync=self.sync)

    def warm_up(self, warmup_seconds: float, warmup_calls: int = 1) -> None:
        times = [self.block(1)]  # the first call (compilation, allocation) is never a sample
        start = self.clock()  # ... nor does it eat into the warm-up time
        cap = warmup_seconds * WARMUP_CAP_FACTOR
        while True:
            elapsed = self.clock() - start
            if len(times) >= warmup_calls and (
                elapsed >= cap or (elapsed >= warmup_seconds and _windows_agree(times))
            ):
                break
            times.append(self.block(1))
        self.warmup_samples = len(times)
        recent = sorted(times[-WARMUP_WINDOW:])
        per_call = max(quantile(recent, 0.5), 1e-9)
        self.calls_per_sample = max(1, math.ceil(self.min_block / per_call))

    def sample(self) -> None:
        self.samples.append(self.block(self.calls_per_sample))

    def statistics(self, stop_reason: str) -> Statistics:
        return summarize(
            self.samples,
            unit="s",
            warmup_samples=self.warmup_samples,
            calls_per_sample=self.calls_per_sample,
            stop_reason=stop_reason,
        )


def _windows_agree(times: list[float]) -> bool:
    """The medians of the last two windows of warm-up times differ by at most 10 %."""
    if len(times) < 1 + 2 * WARMUP_WINDOW:
        return False
    last = sorted(times[-WARMUP_WINDOW:])
    previous = sorted(times[-2 * WARMUP_WINDOW : -WARMUP_WINDOW])
    a, b = quantile(last, 0.5), quantile(previous, 0.5)
    return abs(a - b) <= WARMUP_AGREEMENT * max(a, b, 1e-12)


def _stop_reason(
    samples_of: list[list[float]],
    elapsed: float,
    *,
    min_samples: int,
    max_samples: int,
    budget: float,
    target: float | None,
) -> str | None:
    counts = [len(s) for s in samples_of]
    if min(counts) < min_samples:
        return None
    if target is not None and all(is_stable(s, target) for s in samples_of):
        return "stable"
    if elapsed >= budget:
        return "budget"
    if min(counts) >= max_samples:
        return "max_samples"
    return None


def measure(
    fn: Callable[[], Any],
    *,
    warmup_seconds: float,
    min_samples: int,
    max_samples: int,
    time_budget_seconds: float,
    target_iqr_ratio: float | None,
    sync: Callable[[], None] | None = None,
    clock: Clock = time.perf_counter,
    min_block_seconds: float = MIN_BLOCK_SECONDS,
    warmup_calls: int = 1,
) -> Statistics:
    """Seconds per call of ``fn`` (see the module docstring for the procedure).

    ``min_block_seconds=0`` times every call on its own (latency distributions, where
    block means would hide the tail)."""
    timed = _Timed(fn, clock, sync or _no_sync, min_block_seconds)
    timed.warm_up(warmup_seconds, warmup_calls)
    start = clock()
    while True:
        timed.sample()
        reason = _stop_reason(
            [timed.samples],
            clock() - start,
            min_samples=min_samples,
            max_samples=max_samples,
            budget=time_budget_seconds,
            target=target_iqr_ratio,
        )
        if reason is not None:
            return timed.statistics(reason)


def measure_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup_seconds: float,
    min_samples: int,
    max_samples: int,
    time_budget_seconds: float,
    target_iqr_ratio: float | None,
    sync: Callable[[], None] | None = None,
    clock: Clock = time.perf_counter,
    seed: int = 0,
    min_block_seconds: float = MIN_BLOCK_SECONDS,
    warmup_calls: int = 1,
) -> dict[str, Statistics]:
    """Seconds per call of each callable, sampled in rounds of shuffled order.

    The time budget is per contender (the whole loop may take ``len(fns)`` budgets), and
    sampling continues until *every* contender is stable, so neither gets fewer samples.
    """
    if not fns:
        raise ValueError("measure_interleaved needs at least one callable")
    timed = {name: _Timed(fn, clock, sync or _no_sync, min_block_seconds) for name, fn in fns.items()}
    order = list(timed)
    rng = random.Random(seed)
    rng.shuffle(order)
    for name in order:
        timed[name].warm_up(warmup_seconds, warmup_calls)
    start = clock()
    budget = time_budget_seconds * len(timed)
    while True:
        rng.shuffle(order)
        for name in order:
            timed[name].sample()
        reason = _stop_reason(
            [t.samples for t in timed.values()],
            clock() - start,
            min_samples=min_samples,
            max_samples=max_samples,
            budget=budget,
            target=target_iqr_ratio,
        )
        if reason is not None:
            return {name: t.statistics(reason) for name, t in timed.items()}


def paired_ratio(numerator: Statistics, denominator: Statistics) -> Statistics:
    """Statistics of the round-by-round ratios numerator/denominator of two contenders of
    one :func:`measure_interleaved` call (sample ``i`` of each is from round ``i``): the
    ratio of calls timed back to back, so drift between rounds cancels out."""
    if numerator.n != denominator.n:
        raise ValueError(
            f"paired_ratio needs samples from the same rounds, got {numerator.n} and {denominator.n}"
        )
    ratios = [a / b for a, b in zip(numerator.samples, denominator.samples, strict=True) if b > 0]
    if not ratios:
        raise ValueError("paired_ratio: no round with a positive denominator")
    return summarize(
        ratios,
        unit="x",
        warmup_samples=denominator.warmup_samples,
        calls_per_sample=denominator.calls_per_sample,
        stop_reason=denominator.stop_reason,
    )
