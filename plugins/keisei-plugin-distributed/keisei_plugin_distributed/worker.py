"""What every rank runs: rebuild the cell, time one rank alone, then time PPO steps under DDP.

Both launchers end here: :mod:`keisei_plugin_distributed.launch` (torch.multiprocessing,
one machine) calls :func:`spawn_entry` in each spawned process; the torchrun runner
calls :func:`run_cell_in_group` inside the process group torchrun set up.

The workload is the benchmark engine's own PPO step (``keisei_core.bench.workloads.ppo_step``)
on a :class:`ActorCriticDDP`: DistributedDataParallel around the strategy-applied model
(a compiled model sits *inside* DDP), exposing ``evaluate_actions`` so the engine's loss
code runs unchanged while every backward all-reduces the gradients.

Timing is the engine's adaptive loop (``keisei_core.timing.measure``: warm-up until
stable, samples until the IQR target or the budget) fed with an *agreed clock*: every
clock reading is all-reduced (max) across ranks, so every rank sees the same times, makes
the same warm-up and stopping decisions and runs the same number of steps -- collectives
never go out of step. Each rank also times its own steps; the reported global step time
is, step by step, the slowest rank's own time, so the clock's collectives are not in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from keisei_core.plugin import one_line

RESULT_FILE = "result.json"
# Seeds of the ranks' minibatches: rank r trains on its own shard of (synthetic) data.
RANK_SEED_STRIDE = 1_000


class ActorCriticDDP(DistributedDataParallel):
    """DDP whose ``evaluate_actions`` goes through DDP's forward (gradient sync needs that)."""

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, legal_mask: torch.Tensor | None = None
    ) -> Any:
        return self(obs, actions, legal_mask)


class EvaluateActions(nn.Module):
    """The policy's ``evaluate_actions`` as ``forward``, the one method DDP wraps."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, legal_mask: torch.Tensor | None = None) -> Any:
        policy: Any = self.policy  # any actor-critic module (nn.Module typing says Tensor | Module)
        return policy.evaluate_actions(obs, actions, legal_mask)


class PhaseLog:
    """This rank's current phase in ``rank-<r>.phase`` (the launcher quotes it on a
    timeout) and the seconds each phase took (reported with the result)."""

    def __init__(self, folder: Path | None, rank: int, launched_at: float | None = None) -> None:
        self.path = folder / f"rank-{rank}.phase" if folder is not None else None
        self.current: str | None = None
        self.since = time.perf_counter()
        self.seconds: dict[str, float] = {}
        if launched_at is not None:  # wall clock of the launcher: interpreter start and imports
            self.seconds["starting the process"] = round(time.time() - launched_at, 3)

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] = round(self.seconds.get(self.current, 0.0) + now - self.since, 3)
        self.current, self.since = phase, now
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(phase, encoding="utf-8")
        os.replace(tmp, self.path)


def agreed_clock(device: torch.device) -> Callable[[], float]:
    """A clock whose every reading is the max over ranks of each rank's own reading.

    Readings start from a common barrier, so the max is the slowest rank's time; every
    rank gets the identical float, hence identical decisions in the timing loop."""
    reading = torch.zeros(1, dtype=torch.float64, device=device)
    dist.barrier()
    origin = time.perf_counter()

    def clock() -> float:
        reading.fill_(time.perf_counter() - origin)
        dist.all_reduce(reading, op=dist.ReduceOp.MAX)
        return float(reading.item())

    return clock


class CellBuildFailed(RuntimeError):
    """Some rank could not build or compile the cell; every rank raises this together."""


def _one_line(exc: BaseException) -> str:
    return one_line(exc, limit=300)


def _agree_or_raise(error: BaseException | None, what: str, device: torch.device) -> None:
    """All ranks learn whether any rank failed ``what``; then all raise the same error.

    Without this a rank that fails to build leaves the others waiting in a collective
    until the timeout; with it, every rank stops at once with every rank's reason."""
    failed = torch.tensor([1 if error is not None else 0], dtype=torch.int32, device=device)
    dist.all_reduce(failed, op=dist.ReduceOp.MAX)
    if int(failed.item()) == 0:
        return
    reasons: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(reasons, _one_line(error) if error is not None else None)
    parts = [f"rank {r}: {reason}" for r, reason in enumerate(reasons) if reason is not None]
    raise CellBuildFailed(f"{what} failed on {len(parts)} rank(s): " + "; ".join(parts))


def _rank_device(task: Mapping[str, Any], local_rank: int) -> torch.device:
    if task["device"] == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def run_cell_in_group(task: Mapping[str, Any], *, local_rank: int, phase: PhaseLog | None = None) -> dict[str, Any]:
    """Measure one cell inside an initialised process group; every rank returns the
    gathered summary (``ranks`` holds one entry per rank)."""
    from keisei_core.plugin import (
        BenchSettings,
        PluginHost,
        apply_cell_strategy,
        build_probe_context,
        measure,
        ppo_step,
        report_data,
        summarize,
    )

    rank, world_size = dist.get_rank(), dist.get_world_size()
    phase = phase or PhaseLog(None, rank)
    plan = task["plan"]
    torch.set_num_threads(int(plan["threads_per_rank"]))
    device = _rank_device(task, local_rank)

    # -- build: every rank rebuilds the cell from its recipe (compiled models do not pickle)
    model: Any = None
    context: Any = None
    report: Any = None
    error: BaseException | None = None
    try:
        phase("loading plugins")
        host = PluginHost(list(task["plugins"]), warn=lambda _message: None).load()
        phase("building the model")
        context = build_probe_context({**task, "threads": plan["threads_per_rank"], "training": True}, host)
        context.settings = BenchSettings(**task["settings"])
        phase(f"applying strategy {task['strategy']}")
        model, report = apply_cell_strategy(context, host)
        model.train(True)
    except Exception as exc:  # reported by every rank below, then raised
        error = exc
    _agree_or_raise(error, f"building {task['model']} with {task['strategy']}", device)

    # -- one rank alone, no DDP: the reference for the scaling efficiency
    baseline: dict[str, Any] | None = None
    if plan["baseline"]:
        if rank == 0:
            phase("timing one rank alone (baseline)")
            seconds = measure(ppo_step(model, context.rollout_batch()), **context.timing_settings())
            baseline = seconds.to_dict()
        else:
            phase("waiting for rank 0's one-rank baseline")
        dist.barrier()

    # -- DDP: the same PPO step, gradients all-reduced in backward
    phase("wrapping the model in DistributedDataParallel")
    ddp = ActorCriticDDP(
        EvaluateActions(model),
        device_ids=[local_rank] if device.type == "cuda" else None,
        find_unused_parameters=bool(plan["find_unused_parameters"]),
        bucket_cap_mb=float(plan["bucket_cap_mb"]),
    )
    step = ppo_step(ddp, context.rollout_batch(seed=context.seed + RANK_SEED_STRIDE * (rank + 1)))
    local_seconds: list[float] = []
    last_loss: list[Any] = [None]

    def timed_step() -> Any:
        start = time.perf_counter()
        loss = step()
        context.synchronize()
        local_seconds.append(time.perf_counter() - start)
        last_loss[0] = loss
        return loss

    phase("timing DDP steps")
    seconds = measure(timed_step, clock=agreed_clock(device), **context.timing_settings())
    measured = local_seconds[-seconds.n * seconds.calls_per_sample :]
    local = summarize(measured, unit="s", stop_reason=seconds.stop_reason)
    mine = {
        "rank": rank,
        "local_rank": local_rank,
        "host": platform.node(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": len(local_seconds),
        "step_seconds": local.to_dict(),
        "samples_per_second": task["batch_size"] / local.median,
        "final_loss": float(last_loss[0].detach().float().item()) if last_loss[0] is not None else None,
    }
    phase("gathering results")
    mine["phases"] = dict(phase.seconds)
    ranks: list[Any] = [None] * world_size
    dist.all_gather_object(ranks, (mine, measured))
    # A synchronous step lasts as long as its slowest rank: the global per-step time is the
    # max over ranks of their own step times (the agreed clock's collectives excluded).
    slowest = [max(times) for times in zip(*(r[1] for r in ranks), strict=True)]
    global_seconds = summarize(
        slowest, unit="s", warmup_samples=seconds.warmup_samples, stop_reason=seconds.stop_reason
    )
    phase("done")
    return {
        "world_size": world_size,
        "backend": dist.get_backend(),
        "global_step_seconds": global_seconds.to_dict(),
        "control_block_seconds": seconds.to_dict(),
        "baseline_step_seconds": baseline,
        "ranks": [r[0] for r in ranks],
        "compile_report": report_data(report) if report is not None else None,
    }


def _redirect_output(log: Path) -> None:
    """Send this rank's stdout/stderr to its log file (the parent quotes its tail on errors)."""
    sys.stdout.flush()
    sys.stderr.flush()
    handle = log.open("a", encoding="utf-8")
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle


def spawn_entry(rank: int, task: dict[str, Any], world_size: int, port: int) -> None:
    """Body of a rank spawned by :func:`keisei_plugin_distributed.launch.launch_local`.

    Rendezvous goes through the parent's TCPStore on 127.0.0.1:``port``; gloo and NCCL
    sockets are bound to the loopback interface, so nothing listens on other addresses."""
    scratch = Path(task["scratch"])
    _redirect_output(scratch / f"rank-{rank}.log")
    if "environment" in task:  # the launching process's environment (a forkserver's may be older)
        os.environ.clear()
        os.environ.update(task["environment"])
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    os.environ["NCCL_SOCKET_IFNAME"] = "lo"
    phase = PhaseLog(scratch, rank, task.get("launched_at"))
    phase("importing torch._dynamo")
    # The first optimizer step imports torch._dynamo (seconds). Import it now, on every rank
    # at once, rather than rank by rank while the others wait in a collective.
    import torch._dynamo
    phase("joining the process group")
    timeout = timedelta(seconds=float(task["plan"]["timeout_seconds"]))
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timeout)
    kwargs: dict[str, Any] = {}
    if task["plan"]["backend"] == "nccl":
        kwargs["device_id"] = torch.device("cuda", rank)  # NCCL communicators bound eagerly
    dist.init_process_group(
        task["plan"]["backend"], store=store, rank=rank, world_size=world_size, timeout=timeout, **kwargs
    )
    try:
        summary = run_cell_in_group(task, local_rank=rank, phase=phase)
        if rank == 0:
            tmp = scratch / f".{RESULT_FILE}.tmp"
            tmp.write_text(json.dumps(summary, default=str), encoding="utf-8")
            os.replace(tmp, scratch / RESULT_FILE)
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
