"""The speed check: is the compiled model faster than eager where it will be used?

Part of every ``compile_model`` report (at each declared batch size); with
``guard="faster"`` a compiled model that is not faster falls back to eager.
Eager and compiled forward passes (eval mode, no grad, the rollout case) alternate call
by call, and which goes first alternates too, so drift in a shared machine's load hits
both alike (the original always timed the baseline first). Each pair's ratio
(eager / compiled, timed back to back) is kept too: the quartiles of those ratios say
whether the difference is larger than the noise. Medians and interquartile ranges,
never means: one descheduled call must not decide the verdict.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from keisei_core.compile.report import SpeedCheck


def _timed_call(model: nn.Module, obs: torch.Tensor) -> float:
    if obs.device.type == "cuda":
        torch.cuda.synchronize(obs.device)
    start = time.perf_counter()
    model(obs)
    if obs.device.type == "cuda":
        torch.cuda.synchronize(obs.device)
    return time.perf_counter() - start


def _iqr(samples: list[float]) -> float:
    if len(samples) < 2:
        return 0.0
    quartiles = statistics.quantiles(samples, n=4, method="inclusive")
    return quartiles[2] - quartiles[0]


def compare_speed(
    eager: nn.Module,
    compiled: nn.Module,
    obs: torch.Tensor,
    *,
    min_samples: int = 5,
    max_samples: int = 100,
    budget_seconds: float = 4.0,
    warmup_calls: int = 2,
) -> SpeedCheck:
    """Median forward time of each model at ``obs``'s batch size, sampled interleaved."""
    eager_times: list[float] = []
    compiled_times: list[float] = []
    was = (eager.training, compiled.training)
    eager.eval()
    compiled.eval()
    try:
        with torch.no_grad():
            for _ in range(warmup_calls):
                eager(obs)
                compiled(obs)
            start = time.perf_counter()
            while len(eager_times) < max_samples:
                if len(eager_times) % 2 == 0:
                    eager_times.append(_timed_call(eager, obs))
                    compiled_times.append(_timed_call(compiled, obs))
                else:
                    compiled_times.append(_timed_call(compiled, obs))
                    eager_times.append(_timed_call(eager, obs))
                if len(eager_times) >= min_samples and time.perf_counter() - start >= budget_seconds:
                    break
    finally:
        eager.train(was[0])
        compiled.train(was[1])
    ratios = sorted(e / c for e, c in zip(eager_times, compiled_times, strict=True) if c > 0)
    ratio_q1, ratio_q3 = _quartiles(ratios)
    return SpeedCheck(
        batch_size=int(obs.shape[0]),
        samples=len(eager_times),
        eager_ms=statistics.median(eager_times) * 1e3,
        compiled_ms=statistics.median(compiled_times) * 1e3,
        eager_iqr_ms=_iqr(eager_times) * 1e3,
        compiled_iqr_ms=_iqr(compiled_times) * 1e3,
        ratio_median=statistics.median(ratios) if ratios else None,
        ratio_q1=ratio_q1,
        ratio_q3=ratio_q3,
    )


def _quartiles(samples: list[float]) -> tuple[float | None, float | None]:
    if not samples:
        return None, None
    if len(samples) < 2:
        return samples[0], samples[0]
    quartiles = statistics.quantiles(samples, n=4, method="inclusive")
    return quartiles[0], quartiles[2]
