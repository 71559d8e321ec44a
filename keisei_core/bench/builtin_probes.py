"""The built-in probes (registered by the ``builtin.probes`` plugin).

- ``latency``: milliseconds per acting call at the cell's batch size, every call timed.
- ``throughput``: samples per second of acting calls.
- ``train-step``: samples per second of PPO update steps (see :mod:`workloads`).
- ``speedup``: eager and strategy acting calls interleaved in shuffled rounds; the median
  of per-round ratios eager/strategy (paired samples, so drift cancels).
- ``memory``: CUDA allocator peak on GPU; on CPU the peak resident set size of a fresh
  child process that builds the cell and runs the workload (bounded in time).
- ``compile-time``: seconds from an eager model to the strategy's first result, in a
  fresh process with empty compile caches (cold) and again with the caches it filled (warm).
- ``flops``: forward FLOPs per sample from ``torch.utils.flop_counter`` (matmuls and
  convolutions) on the eager model; the PPO step's FLOPs in ``extra``.
- ``peak``: the machine's measured FLOP/s on a large matmul and a tower-sized
  convolution (the better one), calibrated once per run and cached.
- ``mfu``: achieved forward FLOP/s of the cell over that measured peak, in percent.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported
from keisei_core.bench.workloads import act_call, forward_call, ppo_loss, ppo_step
from keisei_core.stats import Statistics, summarize

MIB = 1024 * 1024
CHILD_TIMEOUT_SECONDS = 300.0


def _ms(stats: Statistics) -> Statistics:
    return stats.scaled(1e3, "ms")


def _per_second(stats: Statistics, items: int, unit: str) -> Statistics:
    return stats.mapped(lambda seconds: items / seconds, unit)


def run_latency(context: ProbeContext) -> ProbeResult:
    call = act_call(context.model, context.observations(), context.legal_masks())
    stats = _ms(context.time(call, per_call=True))
    return ProbeResult(
        "latency", "ms", stats.median, stats, higher_is_better=False,
        extra={"call": "get_action_and_value"},
    )


def run_throughput(context: ProbeContext) -> ProbeResult:
    call = act_call(context.model, context.observations(), context.legal_masks())
    stats = _per_second(context.time(call), context.batch_size, "samples/s")
    return ProbeResult(
        "throughput", "samples/s", stats.median, stats, extra={"call": "get_action_and_value"}
    )


def run_train_step(context: ProbeContext) -> ProbeResult:
    step = ppo_step(context.model, context.rollout_batch())
    seconds = context.time(step)
    stats = _per_second(seconds, context.batch_size, "samples/s")
    return ProbeResult(
        "train-step", "samples/s", stats.median, stats,
        extra={"step_ms_median": seconds.median * 1e3, "final_loss": float(step().detach().float().item())},
    )


def run_speedup(context: ProbeContext) -> ProbeResult:
    if context.baseline:
        raise ProbeUnsupported(f"speedup compares a strategy against eager; {context.strategy} is the baseline")
    obs, masks = context.observations(), context.legal_masks()
    timings = context.time_interleaved(
        {"eager": act_call(context.eager_model, obs, masks), "strategy": act_call(context.model, obs, masks)}
    )
    eager, compiled = timings["eager"], timings["strategy"]
    ratios = [e / c for e, c in zip(eager.samples, compiled.samples, strict=True) if c > 0]
    stats = summarize(ratios, unit="x", warmup_samples=compiled.warmup_samples,
                      calls_per_sample=compiled.calls_per_sample, stop_reason=compiled.stop_reason)
    return ProbeResult(
        "speedup", "x", stats.median, stats,
        extra={
            "eager_ms_median": eager.median * 1e3,
            "strategy_ms_median": compiled.median * 1e3,
            "eager_iqr_ratio": eager.iqr_ratio,
            "strategy_iqr_ratio": compiled.iqr_ratio,
            "pairing": "per round, shuffled order",
        },
    )


def _child_task(context: ProbeContext, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "model": context.model_name,
        "options": context.model_options,
        "strategy": context.strategy,
        "batch_size": context.batch_size,
        "device": context.device,
        "dtype": context.dtype,
        "seed": context.seed,
        "threads": context.threads,
        "training": context.training,
        "plugins": list(context.plugins),
        "scratch": str(context.scratch_dir),
    }


def run_memory(context: ProbeContext) -> ProbeResult:
    if context.device == "cuda":
        return _cuda_memory(context)
    from keisei_core.bench.child import run_child

    result = run_child(_child_task(context, "memory"), timeout=CHILD_TIMEOUT_SECONDS)
    peak = result["rss_peak_bytes"] / MIB
    extra = {
        "measure": "peak RSS of a fresh child process (VmHWM)",
        "after_import_mib": result["rss_after_import_bytes"] / MIB,
        "after_build_mib": result["rss_after_build_bytes"] / MIB,
        "after_apply_mib": result["rss_after_apply_bytes"] / MIB,
        "workload_delta_mib": (result["rss_peak_bytes"] - result["rss_after_apply_bytes"]) / MIB,
        "model_delta_mib": (result["rss_after_build_bytes"] - result["rss_after_import_bytes"]) / MIB,
    }
    return ProbeResult("memory", "MiB", peak, None, higher_is_better=False, extra=extra)


def _cuda_memory(context: ProbeContext) -> ProbeResult:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    work = (
        ppo_step(context.model, context.rollout_batch())
        if context.training
        else act_call(context.model, context.observations(), context.legal_masks())
    )
    for _ in range(3):
        work()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return ProbeResult(
        "memory", "MiB", peak / MIB, None, higher_is_better=False,
        extra={"measure": "torch.cuda.max_memory_allocated", "resident_before_mib": start / MIB,
               "workload_delta_mib": (peak - start) / MIB},
    )


def run_compile_time(context: ProbeContext) -> ProbeResult:
    if context.baseline:
        raise ProbeUnsupported(f"{context.strategy} compiles nothing")
    from keisei_core.bench.child import run_child

    cache = context.scratch_dir / "compile-cache"
    env = {
        "KEISEI_CACHE_DIR": str(cache / "keisei"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
    }
    task = _child_task(context, "compile")
    cold = run_child(task, timeout=CHILD_TIMEOUT_SECONDS, env=env)
    warm = run_child(task, timeout=CHILD_TIMEOUT_SECONDS, env=env)
    return ProbeResult(
        "compile-time", "s", cold["compile_seconds"], None, higher_is_better=False,
        extra={
            "cold_seconds": cold["compile_seconds"],
            "warm_seconds": warm["compile_seconds"],
            "cold_apply_seconds": cold["apply_seconds"],
            "cold_first_call_seconds": cold["first_call_seconds"],
            "warm_apply_seconds": warm["apply_seconds"],
            "warm_first_call_seconds": warm["first_call_seconds"],
            "eager_first_call_seconds": cold["eager_first_call_seconds"],
            # compile_model's own split: applying + the first compiled call, then validation.
            "cold_compile_seconds": cold.get("report_compile_seconds"),
            "warm_compile_seconds": warm.get("report_compile_seconds"),
            "cold_validation_seconds": cold.get("report_validation_seconds"),
            "warm_validation_seconds": warm.get("report_validation_seconds"),
            "cold_warm_start": cold.get("warm_start"),
            "warm_warm_start": warm.get("warm_start"),
            "measure": (
                "fresh process: apply strategy (compile + validation at the cell's batch size) + first "
                "acting call; cold = empty caches, warm = caches from cold"
            ),
        },
    )


def _count_flops(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def forward_flops_per_sample(context: ProbeContext) -> float:
    """Forward FLOPs per sample of the eager model at the cell's batch size (cached per run)."""
    import torch

    key = ("flops", context.model_name, repr(sorted(context.model_options.items())), context.batch_size)
    cache = context.run_cache.setdefault("flops_per_sample", {})
    if key not in cache:
        model = context.eager_model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                cache[key] = _count_flops(lambda: model(context.observations())) / context.batch_size
        finally:
            model.train(was_training)
    return float(cache[key])


def run_flops(context: ProbeContext) -> ProbeResult:
    forward = forward_flops_per_sample(context)
    model = copy.deepcopy(context.eager_model).train()
    batch = context.rollout_batch()
    train = _count_flops(lambda: ppo_loss(model, batch).backward()) / context.batch_size
    return ProbeResult(
        "flops", "FLOP", forward, None, higher_is_better=False,
        extra={
            "forward_flop_per_sample": forward,
            "train_step_flop_per_sample": train,
            "counted_on": "eager model (strategies do not change the math); matmuls and convolutions",
        },
    )


def calibrate_peak(context: ProbeContext) -> dict[str, Any]:
    """Measured FLOP/s of a large matmul and a tower-sized 3x3 convolution; cached per run."""
    calibration = context.run_cache.setdefault("calibration", {})
    key = f"peak_flops_{context.device}_{context.dtype}"
    if key in calibration:
        return dict(calibration[key])
    import torch

    dtype, device = context.torch_dtype, context.device
    size = 2048 if device == "cuda" else 1024
    gen = torch.Generator().manual_seed(context.seed)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device=device, dtype=dtype)
    x = torch.randn(64 if device == "cuda" else 16, 256, 9, 9, generator=gen).to(device=device, dtype=dtype)
    matmul_flops = 2.0 * size**3
    conv_flops = 2.0 * x.shape[0] * 81 * 256 * 256 * 9

    def matmul() -> Any:
        return a @ b

    def convolve() -> Any:
        with torch.no_grad():
            return conv(x)

    timings = context.time_interleaved({"matmul": matmul, "conv": convolve})
    # The fast tail (p10) estimates what the hardware can do; the median would fold in noise.
    measured = {
        "matmul_flops_per_second": matmul_flops / timings["matmul"].p10,
        "conv_flops_per_second": conv_flops / timings["conv"].p10,
    }
    entry = {
        "peak_flops_per_second": max(measured.values()),
        **measured,
        "device": device,
        "dtype": context.dtype,
        "threads": context.threads,
        "matmul_size": size,
        "conv_input": list(x.shape),
    }
    calibration[key] = entry
    return dict(entry)


def run_peak(context: ProbeContext) -> ProbeResult:
    cached = f"peak_flops_{context.device}_{context.dtype}" in context.run_cache.get("calibration", {})
    entry = calibrate_peak(context)
    return ProbeResult("peak", "GFLOP/s", entry["peak_flops_per_second"] / 1e9, None,
                       extra={**entry, "cached": cached})


def run_mfu(context: ProbeContext) -> ProbeResult:
    peak = calibrate_peak(context)["peak_flops_per_second"]
    flops = forward_flops_per_sample(context) * context.batch_size
    if flops <= 0 or not math.isfinite(flops):
        raise ProbeUnsupported("the flop counter saw no matmul or convolution in this model")
    seconds = context.time(forward_call(context.model, context.observations()))
    stats = seconds.mapped(lambda s: 100.0 * flops / s / peak, "%")
    return ProbeResult(
        "mfu", "%", stats.median, stats,
        extra={
            "achieved_flops_per_second": flops / seconds.median,
            "peak_flops_per_second": peak,
            "forward_flop_per_batch": flops,
            "call": "forward",
            "threads": context.threads,
            "cpu_count": os.cpu_count(),
        },
    )
