"""The speed check: is the compiled model faster than eager where it will be used?

Part of every ``compile_model`` report (at each declared batch size); with
``guard="faster"`` a compiled model that is not faster falls back to eager.
Eager and compiled forward passes (eval mode, no grad, the rollout case) are timed call
by call with keisei's one timing primitive, :func:`keisei_core.timing.measure_interleaved`:
rounds of one call each, in an order shuffled every round, so drift in a shared machine's
load hits both alike (the original always timed the baseline first). Each round's ratio
(eager / compiled, timed back to back) is kept too: the quartiles of those ratios say
whether the difference is larger than the noise. Medians and interquartile ranges,
never means: one descheduled call must not decide the verdict. Sampling never stops on
stability here: it runs until the budget (after ``min_samples``) or ``max_samples``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from keisei_core.compile.report import SpeedCheck
from keisei_core.timing import measure_interleaved, paired_ratio


def _forward(model: nn.Module, obs: torch.Tensor) -> Callable[[], Any]:
    def call() -> Any:
        return model(obs)

    return call


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
    """Median forward time of each model at ``obs``'s batch size, sampled interleaved;
    ``budget_seconds`` bounds both models' calls together."""
    sync = (lambda: torch.cuda.synchronize(obs.device)) if obs.device.type == "cuda" else None
    was = (eager.training, compiled.training)
    eager.eval()
    compiled.eval()
    try:
        with torch.no_grad():
            timings = measure_interleaved(
                {"eager": _forward(eager, obs), "compiled": _forward(compiled, obs)},
                warmup_seconds=0.0,
                warmup_calls=warmup_calls,
                min_samples=min_samples,
                max_samples=max_samples,
                time_budget_seconds=budget_seconds / 2,  # the primitive's budget is per contender
                target_iqr_ratio=None,
                sync=sync,
                min_block_seconds=0.0,  # one call per sample: the pairs are single calls
            )
    finally:
        eager.train(was[0])
        compiled.train(was[1])
    eager_s, compiled_s = timings["eager"], timings["compiled"]
    ratios = None
    if any(s > 0 for s in compiled_s.samples):
        ratios = paired_ratio(eager_s, compiled_s)
    return SpeedCheck(
        batch_size=int(obs.shape[0]),
        samples=eager_s.n,
        eager_ms=eager_s.median * 1e3,
        compiled_ms=compiled_s.median * 1e3,
        eager_iqr_ms=eager_s.iqr * 1e3,
        compiled_iqr_ms=compiled_s.iqr * 1e3,
        ratio_median=ratios.median if ratios is not None else None,
        ratio_q1=ratios.q1 if ratios is not None else None,
        ratio_q3=ratios.q3 if ratios is not None else None,
    )
