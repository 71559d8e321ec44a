"""Built-in plugin: the benchmark probes (latency, throughput, train-step, speedup, memory,
compile-time, flops, peak, mfu). Implementations live in
:mod:`keisei_core.bench.builtin_probes`; nothing here imports torch."""

from __future__ import annotations

from collections.abc import Callable

from keisei_core.bench import builtin_probes as impl
from keisei_core.hookspecs import hookimpl
from keisei_core.specs import ProbeSpec


@hookimpl
def keisei_register_probes(register: Callable[[ProbeSpec], None]) -> None:
    register(ProbeSpec(
        "latency", impl.run_latency, unit="ms", higher_is_better=False,
        description="milliseconds per acting call (get_action_and_value) at the batch size, every call timed",
    ))
    register(ProbeSpec(
        "throughput", impl.run_throughput, unit="samples/s",
        description="samples per second of acting calls (get_action_and_value)",
    ))
    register(ProbeSpec(
        "train-step", impl.run_train_step, unit="samples/s", needs_training=True,
        description="samples per second of PPO update steps (evaluate_actions, clipped loss, backward, Adam)",
    ))
    register(ProbeSpec(
        "speedup", impl.run_speedup, unit="x",
        description="eager/strategy time ratio of acting calls, interleaved in shuffled rounds",
    ))
    register(ProbeSpec(
        "memory", impl.run_memory, unit="MiB", higher_is_better=False,
        description="peak memory: CUDA allocator peak, or peak RSS of a fresh child process on CPU",
    ))
    register(ProbeSpec(
        "compile-time", impl.run_compile_time, unit="s", higher_is_better=False,
        description="seconds to the strategy's first result in a fresh process, cold and warm caches",
    ))
    register(ProbeSpec(
        "flops", impl.run_flops, unit="FLOP", higher_is_better=False,
        description="forward FLOPs per sample (torch flop counter); PPO step FLOPs in extra",
    ))
    register(ProbeSpec(
        "peak", impl.run_peak, unit="GFLOP/s",
        description="calibration: this machine's measured FLOP/s (large matmul / conv), once per run",
    ))
    register(ProbeSpec(
        "mfu", impl.run_mfu, unit="%",
        description="achieved forward FLOP/s over the calibrated peak, in percent",
    ))
