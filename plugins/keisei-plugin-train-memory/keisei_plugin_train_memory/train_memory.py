"""The ``train-memory`` probe: peak memory of PPO update steps.

On CUDA: the allocator's peak over a few PPO steps of the cell's model, in process.

On CPU: a fresh child process (``python -m keisei_plugin_train_memory.train_memory``)
builds the cell's model, applies its strategy's parts *without* validation (the engine
validated the strategy already, in the parent), restarts its peak-RSS counter and runs
PPO update steps; it reports that peak (``VmHWM``) and its resident size before. The
difference, ``workload_delta_mib``, is what the training step itself needs --
activations, gradients, optimizer state. ``saved_for_backward_mib`` isolates the part
activation checkpointing changes: the bytes autograd keeps from a PPO loss's forward
for its backward. Why not the engine's ``memory`` probe with the cell in training mode: its child
applies the strategy through ``compile_model``, whose validation runs the *eager* model's
train-mode backward in the same process, so the peak would be eager's whatever the
strategy.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported

MIB = 1024 * 1024
RESULT_PREFIX = "KEISEI_TRAIN_MEMORY "
CHILD_TIMEOUT_SECONDS = 600.0
STEPS = 3


class TrainMemoryChildError(RuntimeError):
    """The child measurement failed, timed out or printed no result."""


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _current_rss_bytes() -> int:
    current = _status_bytes("VmRSS")
    return current if current is not None else _maxrss_bytes()


def _peak_rss_bytes() -> int:
    # VmHWM belongs to this process's address space. getrusage's ru_maxrss does not: it
    # survives fork + exec, so a child's starts at its parent's resident size.
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else _maxrss_bytes()


def _reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def run_train_memory(context: ProbeContext) -> ProbeResult:
    if not context.training:
        raise ProbeUnsupported("train-memory measures training steps; the cell is not in training mode")
    if context.device == "cuda":
        return _cuda_train_memory(context)
    task = {
        "model": context.model_name,
        "options": context.model_options,
        "strategy": context.strategy,
        "batch_size": context.batch_size,
        "dtype": context.dtype,
        "seed": context.seed,
        "threads": context.threads,
        "plugins": list(context.plugins),
        "steps": STEPS,
    }
    result = run_child(task, timeout=CHILD_TIMEOUT_SECONDS)
    peak = result["rss_peak_bytes"] / MIB
    return ProbeResult(
        "train-memory", "MiB", peak, None, higher_is_better=False,
        extra={
            "measure": "peak RSS (VmHWM) of a fresh child process over PPO update steps",
            "peak_scope": result["peak_scope"],
            "workload_delta_mib": (result["rss_peak_bytes"] - result["rss_after_apply_bytes"]) / MIB,
            "saved_for_backward_mib": result["saved_for_backward_bytes"] / MIB,
            "after_import_mib": result["rss_after_import_bytes"] / MIB,
            "after_build_mib": result["rss_after_build_bytes"] / MIB,
            "after_apply_mib": result["rss_after_apply_bytes"] / MIB,
            "steps": STEPS,
            "strategy_validated_in_child": False,
        },
    )


def _cuda_train_memory(context: ProbeContext) -> ProbeResult:
    import torch

    from keisei_core.bench.workloads import ppo_step

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    step = ppo_step(context.model, context.rollout_batch())
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return ProbeResult(
        "train-memory", "MiB", peak / MIB, None, higher_is_better=False,
        extra={"measure": "torch.cuda.max_memory_allocated over PPO update steps",
               "resident_before_mib": start / MIB, "workload_delta_mib": (peak - start) / MIB, "steps": STEPS},
    )


def run_child(task: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "keisei_plugin_train_memory.train_memory"],
            input=json.dumps(dict(task)),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TrainMemoryChildError(f"train-memory child did not finish within {timeout:.0f} s") from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if "error" in result:
                raise TrainMemoryChildError(f"train-memory child failed: {result['error']}")
            return result
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    raise TrainMemoryChildError(f"train-memory child exited with status {proc.returncode} and no result: {tail}")


def _measure(task: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    from keisei_core.bench.probe_api import ProbeContext
    from keisei_core.bench.workloads import ppo_step
    from keisei_core.compile import resolve_strategy
    from keisei_core.config.experiment import BenchSettings
    from keisei_core.introspect import model_shapes
    from keisei_core.models import build_from_spec, resolve_options
    from keisei_core.plugins import PluginHost
    from keisei_core.specs import StrategyContext

    torch.set_num_threads(int(task["threads"]))
    host = PluginHost(list(task.get("plugins", [])), warn=lambda _message: None).load()
    after_import = _current_rss_bytes()
    spec = host.models.get(task["model"])
    options = resolve_options(spec, task["options"])
    torch.manual_seed(int(task["seed"]))
    dtype = getattr(torch, task["dtype"])
    model = build_from_spec(spec, options).to(dtype=dtype).train()
    shapes = model_shapes(model)
    context = ProbeContext(
        model=model,
        eager_model=model,
        model_name=task["model"],
        model_options=dict(task["options"]),
        strategy=task["strategy"],
        batch_size=int(task["batch_size"]),
        device="cpu",
        dtype=task["dtype"],
        seed=int(task["seed"]),
        settings=BenchSettings(),
        threads=int(task["threads"]),
        scratch_dir=Path("."),
        observation_shape=shapes.observation,
        num_actions=shapes.num_actions,
        training=True,
    )
    batch = context.rollout_batch()
    after_build = _current_rss_bytes()
    strategy_context = StrategyContext(
        device="cpu",
        dtype=task["dtype"],
        example_obs=batch.observations,
        batch_sizes=(int(task["batch_size"]),),
        training=True,
        model_name=task["model"],
        model_options=dict(task["options"]),
    )
    composition = resolve_strategy(task["strategy"], host)
    strategy_context.composition = composition.names
    for part in composition.parts:
        model = part.apply(model, strategy_context)
    model.train()
    after_apply = _current_rss_bytes()
    workload_only = _reset_peak_rss()
    step = ppo_step(model, batch)
    for _ in range(int(task.get("steps", STEPS))):
        step()
    peak = _peak_rss_bytes()
    return {
        "peak_scope": "PPO steps (VmHWM reset after apply)" if workload_only else "whole child process",
        "saved_for_backward_bytes": saved_for_backward_bytes(model, batch),
        "rss_after_import_bytes": after_import,
        "rss_after_build_bytes": after_build,
        "rss_after_apply_bytes": after_apply,
        "rss_peak_bytes": peak,
    }


def saved_for_backward_bytes(model: Any, batch: Any) -> int:
    """Bytes of the activations autograd keeps from the PPO loss's forward for its
    backward (counted by a saved-tensors hook; a storage shared by several saved tensors
    counted once; parameters and buffers not counted).

    Inside a checkpointed block the checkpoint's own hook takes precedence, so what a
    checkpointed block would have saved is not counted -- that is the memory checkpointing
    gives back; the one block recomputed at a time during backward is not included.
    """
    import torch

    from keisei_core.bench.workloads import ppo_loss

    # Weights saved for backward exist anyway: only activations are counted.
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in weights:
            seen[pointer] = max(seen.get(pointer, 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = ppo_loss(model, batch)
    loss.backward()
    return sum(seen.values())


def main() -> int:
    try:
        result = _measure(json.loads(sys.stdin.read()))
    except Exception as exc:  # reported to the parent as one line; the cell is recorded failed
        text = " ".join(str(exc).split())[:400]
        result = {"error": f"{type(exc).__name__}: {text}"}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
