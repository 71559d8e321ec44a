"""The ``train-stability`` probe: many consecutive PPO updates, watched for the failures
that long training runs hit and short benchmarks never see.

What it runs: ``steps`` consecutive PPO update steps on the cell's (strategy-applied,
train-mode) model with one Adam optimizer, each on a fresh synthetic rollout minibatch
generated when it is needed (a stream, never a materialised dataset). The loss is the
benchmark engine's (:func:`keisei_core.bench.workloads.ppo_loss`), with its learning
rate and gradient clipping, so this probe and ``train-step`` train the same way.

What it reports:
- steps completed, and any error raised in a step, classified (``graph-reuse`` for
  "Trying to backward through the graph a second time", ``inplace-modification``, ...);
- non-finite losses (count and first step); the run stops at the first one, since every
  later step trains on NaN weights;
- memory after each step (resident set size on CPU, allocated CUDA memory on GPU), and
  its least-squares slope per step after warm-up: a leak shows as a positive slope.

How it keeps its own footprint flat (the fixes the research stacks needed): no host
synchronisation per step (losses and gradient norms stay on the device until they are
gathered every ``metrics_every`` steps, one transfer per gathering), records are written
to a JSON-lines file in buffered batches, and the in-memory history is a bounded deque.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.plugin import ProbeContext, ProbeResult, one_line

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.plugin import RolloutBatch

MIB = 1024 * 1024

# (substring of the error message, kind) -- first match wins.
ERROR_KINDS: tuple[tuple[str, str], ...] = (
    ("backward through the graph a second time", "graph-reuse"),
    ("Trying to backward through the graph", "graph-reuse"),
    ("modified by an inplace operation", "inplace-modification"),
    ("does not require grad and does not have a grad_fn", "detached-loss"),
    ("out of memory", "out-of-memory"),
)


@attrs.frozen
class StabilitySettings:
    """How long the probe trains and how it watches.

    ``warmup_steps`` are left out of the memory slope (the optimizer's state and the
    allocator's pools appear in the first steps). A leak is suspected when the fitted
    growth over the measured steps exceeds ``leak_threshold_mib``.
    """

    steps: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    metrics_every: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    log_flush_every: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    history: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    warmup_steps: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    leak_threshold_mib: float = attrs.field(default=32.0, validator=attrs.validators.gt(0.0))


def classify_error(error: BaseException) -> str:
    text = str(error)
    for needle, kind in ERROR_KINDS:
        if needle in text:
            return kind
    return type(error).__name__


class OnlineSlope:
    """Least-squares slope of ``y`` on ``x``, accumulated point by point in O(1) memory.

    Sums are kept relative to the first point, so large byte counts do not lose
    precision in the squares.
    """

    def __init__(self) -> None:
        self.count = 0
        self._origin: tuple[float, float] | None = None
        self._sx = self._sy = self._sxx = self._sxy = 0.0

    def add(self, x: float, y: float) -> None:
        if self._origin is None:
            self._origin = (x, y)
        dx, dy = x - self._origin[0], y - self._origin[1]
        self.count += 1
        self._sx += dx
        self._sy += dy
        self._sxx += dx * dx
        self._sxy += dx * dy

    def slope(self) -> float:
        """0.0 for fewer than two distinct ``x``."""
        n = self.count
        spread = n * self._sxx - self._sx * self._sx
        if n < 2 or spread == 0:
            return 0.0
        return (n * self._sxy - self._sx * self._sy) / spread


def memory_reader(device: str) -> tuple[str, Callable[[], int]]:
    """What memory to sample and how: allocated CUDA memory (a host-side counter, no
    synchronisation) or this process's resident set size from ``/proc`` (no torch call)."""
    if device == "cuda":
        import torch

        return "torch.cuda.memory_allocated", torch.cuda.memory_allocated
    page = os.sysconf("SC_PAGE_SIZE")
    statm = Path("/proc/self/statm")
    if statm.exists():

        def rss() -> int:
            return int(statm.read_text().split()[1]) * page

        return "resident set size (/proc/self/statm)", rss
    import resource

    # Without /proc (macOS): the peak RSS, which still rises when memory leaks.
    return "peak resident set size (getrusage)", lambda: int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class BufferedLog:
    """JSON-lines records, written ``flush_every`` at a time (one file append per batch)."""

    def __init__(self, path: Path, flush_every: int) -> None:
        self.path = path
        self.flush_every = flush_every
        self.pending: list[dict[str, Any]] = []
        self.flushes = 0
        self.records = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def add(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        self.records += 1
        if len(self.pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.path.open("a") as handle:
            handle.write("".join(json.dumps(r, allow_nan=False, default=str) + "\n" for r in self.pending))
        self.pending.clear()
        self.flushes += 1


def model_metrics_source(model: nn.Module) -> Callable[[], dict[str, float]] | None:
    """A model's (or wrapped module's) ``metrics()`` method, e.g. router statistics."""
    for module in model.modules():
        metrics = getattr(module, "metrics", None)
        if callable(metrics):
            return metrics  # type: ignore[no-any-return]
    return None


def rollout_stream(context: ProbeContext, steps: int) -> Iterator[RolloutBatch]:
    """One fresh minibatch per step, made when asked for (seeds ``seed + step``)."""
    for step in range(steps):
        yield context.rollout_batch(seed=context.seed + 1 + step)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_stability(context: ProbeContext, settings: StabilitySettings | None = None) -> ProbeResult:
    import torch

    from keisei_core.plugin import LEARNING_RATE, MAX_GRAD_NORM, ppo_loss, trainable_parameters

    settings = settings or StabilitySettings()
    model = context.model
    model.train()
    params = trainable_parameters(model)
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
    memory_measure, read_memory = memory_reader(context.device)
    metrics_source = model_metrics_source(model)
    log = BufferedLog(context.scratch_dir / "train-stability.jsonl", settings.log_flush_every)
    history: deque[dict[str, Any]] = deque(maxlen=settings.history)
    slope = OnlineSlope()
    memory_first: int | None = None
    memory_last: int | None = None
    window_losses: list[torch.Tensor] = []
    window_norms: list[torch.Tensor] = []
    completed = 0
    error: BaseException | None = None
    nonfinite = 0
    first_nonfinite: int | None = None
    first_loss: float | None = None
    last_loss: float | None = None

    def gather(step: int) -> bool:
        """Move the window's losses and norms to the host (one transfer); False on NaN."""
        nonlocal nonfinite, first_nonfinite, first_loss, last_loss
        if not window_losses:
            return True
        values = torch.stack([torch.stack(window_losses), torch.stack(window_norms)]).float().cpu().tolist()
        losses, norms = values
        start = step - len(losses) + 1
        bad = [start + i for i, v in enumerate(losses) if not math.isfinite(v)]
        nonfinite += len(bad)
        if bad and first_nonfinite is None:
            first_nonfinite = bad[0]
        finite = [v for v in losses if math.isfinite(v)]
        if first_loss is None and finite:
            first_loss = finite[0]
        if finite:
            last_loss = finite[-1]
        record: dict[str, Any] = {
            "step": step,
            "loss_mean": _finite_or_none(sum(losses) / len(losses)),
            "grad_norm_mean": _finite_or_none(sum(norms) / len(norms)),
            "nonfinite_losses": len(bad),
            "memory_mib": memory_last / MIB if memory_last is not None else None,
        }
        if metrics_source is not None:
            record.update({k: _finite_or_none(float(v)) for k, v in metrics_source().items()})
        history.append(record)
        log.add(record)
        window_losses.clear()
        window_norms.clear()
        return not bad

    started = time.perf_counter()
    for step, batch in enumerate(rollout_stream(context, settings.steps), start=1):
        try:
            optimizer.zero_grad(set_to_none=True)
            loss = ppo_loss(model, batch)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
        except Exception as exc:  # the probe's job is to report it, with the step
            error = exc
            break
        completed = step
        window_losses.append(loss.detach())
        window_norms.append(norm.detach())
        memory_now = read_memory()
        memory_first = memory_first if memory_first is not None else memory_now
        memory_last = memory_now
        if step > settings.warmup_steps:
            slope.add(step, memory_now)
        if step % settings.metrics_every == 0 and not gather(step):
            break  # a non-finite loss: later steps would train on NaN weights
    gather(completed)
    log.flush()
    context.synchronize()
    seconds = time.perf_counter() - started

    growth_mib = slope.slope() * max(0, slope.count - 1) / MIB
    leak = growth_mib > settings.leak_threshold_mib
    error_step = completed + 1 if error is not None else None
    stable = error is None and nonfinite == 0 and not leak and completed == settings.steps
    extra: dict[str, Any] = {
        "stable": stable,
        "steps_requested": settings.steps,
        "steps_completed": completed,
        "error": one_line(error, limit=300) if error is not None else None,
        "error_kind": classify_error(error) if error is not None else None,
        "error_step": error_step,
        "nonfinite_losses": nonfinite,
        "first_nonfinite_step": first_nonfinite,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "memory_measure": memory_measure,
        "memory_warmup_steps": settings.warmup_steps,
        "memory_measured_steps": slope.count,
        "memory_slope_mib_per_step": slope.slope() / MIB,
        "memory_growth_mib": growth_mib,
        "memory_start_mib": memory_first / MIB if memory_first is not None else None,
        "memory_end_mib": memory_last / MIB if memory_last is not None else None,
        "leak_suspected": leak,
        "leak_threshold_mib": settings.leak_threshold_mib,
        "seconds_per_step": seconds / completed if completed else None,
        "metrics_every": settings.metrics_every,
        "log_path": str(log.path),
        "log_records": log.records,
        "log_flushes": log.flushes,
        "history_kept": len(history),
        "history_limit": settings.history,
        "last_metrics": history[-1] if history else None,
        # The bounded history, without per-layer detail, so the results file keeps the
        # trajectory (the JSON-lines log lives in the cell's scratch directory).
        "history": [{k: v for k, v in record.items() if "/layer" not in k} for record in history],
        "rollouts": "streamed: one synthetic minibatch generated per step",
    }
    return ProbeResult("train-stability", "steps", float(completed), None, higher_is_better=True, extra=extra)
