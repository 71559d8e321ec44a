"""The ``train-step-ddp`` probe: keisei's PPO update step under DistributedDataParallel.

Each rank trains on its own minibatch of the cell's batch size (data parallel, so the
global batch is ``world_size * batch_size``). Reported:
- value: global samples per second (median), from the agreed per-step times;
- ``extra.ranks``: per-rank samples per second, step time, host, device, threads;
- ``extra.scaling_efficiency``: global samples/s over ``world_size`` times what one rank
  alone does (same threads, same strategy, no DDP); 1.0 is perfect scaling;
- ``extra.world_size``, ``extra.backend``, ``extra.launcher`` and the DDP settings.
"""

from __future__ import annotations

from typing import Any

from keisei_core.plugin import ProbeContext, ProbeResult, ProbeUnsupported, Statistics
from keisei_plugin_distributed.options import PROBE_NAME, DdpPlan, parse_options, resolve_plan


def cell_task(
    *,
    model: str,
    options: dict[str, Any],
    strategy: str,
    batch_size: int,
    device: str,
    dtype: str,
    seed: int,
    settings: dict[str, Any],
    plugins: list[str],
    plan: DdpPlan,
) -> dict[str, Any]:
    """The JSON recipe every rank rebuilds the cell from (keys as the engine's child tasks)."""
    return {
        "model": model,
        "options": options,
        "strategy": strategy,
        "batch_size": batch_size,
        "device": device,
        "dtype": dtype,
        "seed": seed,
        "threads": plan.threads_per_rank,
        "training": True,
        "plugins": plugins,
        "settings": settings,
        "plan": plan.to_dict(),
    }


def summary_to_result(summary: dict[str, Any], *, batch_size: int, plan: DdpPlan, launcher: str) -> ProbeResult:
    """Turn the ranks' gathered summary into the cell's result (samples per second)."""
    world = int(summary["world_size"])
    step = Statistics.from_dict(summary["global_step_seconds"])
    global_batch = world * batch_size
    stats = step.mapped(lambda seconds: global_batch / seconds, "samples/s")
    ranks = [
        {
            "rank": r["rank"],
            "host": r["host"],
            "device": r["device"],
            "threads": r["threads"],
            "steps": r["steps"],
            "samples_per_second": r["samples_per_second"],
            "step_ms_median": r["step_seconds"]["median"] * 1e3,
            "step_iqr_ratio": Statistics.from_dict(r["step_seconds"]).iqr_ratio,
            "final_loss": r["final_loss"],
        }
        for r in sorted(summary["ranks"], key=lambda r: r["rank"])
    ]
    extra: dict[str, Any] = {
        "world_size": world,
        "backend": summary["backend"],
        "launcher": launcher,
        "per_rank_batch": batch_size,
        "global_batch": global_batch,
        "step_ms_median": step.median * 1e3,
        "ranks": ranks,
        "threads_per_rank": plan.threads_per_rank,
        "rank_phases_seconds": {str(r["rank"]): r.get("phases", {}) for r in summary["ranks"]},
        "ddp": {
            "wraps": "strategy-applied model (compiled inside DDP)",
            "find_unused_parameters": plan.find_unused_parameters,
            "bucket_cap_mb": plan.bucket_cap_mb,
        },
        "timing": "engine timing loop on a clock agreed across ranks; global step = slowest rank's own step time",
    }
    report = summary.get("compile_report")
    if isinstance(report, dict):  # what the strategy did in the ranks (each compiled its own copy)
        extra["rank0_compile"] = {key: report.get(key) for key in ("status", "reason", "compile_seconds")}
    baseline = summary.get("baseline_step_seconds")
    if baseline is not None:
        single = Statistics.from_dict(baseline)
        single_rate = batch_size / single.median
        extra["one_rank_samples_per_second"] = single_rate
        extra["one_rank_step_ms_median"] = single.median * 1e3
        extra["speedup_vs_one_rank"] = stats.median / single_rate
        extra["scaling_efficiency"] = stats.median / (world * single_rate)
    return ProbeResult(PROBE_NAME, "samples/s", stats.median, stats, extra=extra)


def run_train_step_ddp(context: ProbeContext) -> ProbeResult:
    """Spawn the ranks on this machine and measure the cell (see the module docstring)."""
    import attrs

    from keisei_plugin_distributed.launch import launch_local

    options = parse_options(context.options)
    gpus = 0
    if context.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    plan = resolve_plan(options, device=context.device, threads=context.threads, gpus=gpus)
    if context.device == "cuda" and plan.world_size > gpus:
        raise ProbeUnsupported(
            f"train-step-ddp: world_size {plan.world_size} needs {plan.world_size} GPUs, this machine has {gpus}"
        )
    task = cell_task(
        model=context.model_name,
        options=dict(context.model_options),
        strategy=context.strategy,
        batch_size=context.batch_size,
        device=context.device,
        dtype=context.dtype,
        seed=context.seed,
        settings=attrs.asdict(context.settings),
        plugins=list(context.plugins),
        plan=plan,
    )
    summary = launch_local(
        task, world_size=plan.world_size, timeout=plan.timeout_seconds, scratch=context.scratch_dir / "ddp",
        start_method=plan.start_method,
    )
    launcher = f"torch.multiprocessing ({plan.start_method})"
    return summary_to_result(summary, batch_size=context.batch_size, plan=plan, launcher=launcher)
