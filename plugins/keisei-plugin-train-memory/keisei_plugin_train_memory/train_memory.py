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

import sys
from collections.abc import Mapping
from typing import Any

from keisei_core.plugin import (
    ProbeContext,
    ProbeResult,
    ProbeUnsupported,
    build_probe_context,
    child_main,
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    run_child,
)

MIB = 1024 * 1024
CHILD_MODULE = "keisei_plugin_train_memory.train_memory"
CHILD_TIMEOUT_SECONDS = 600.0
STEPS = 3


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
        "device": "cpu",
        "dtype": context.dtype,
        "training": True,
        "seed": context.seed,
        "threads": context.threads,
        "plugins": list(context.plugins),
        "steps": STEPS,
    }
    result = run_child(task, timeout=CHILD_TIMEOUT_SECONDS, module=CHILD_MODULE)
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

    from keisei_core.plugin import ppo_step

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


def _measure(task: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    from keisei_core.plugin import PluginHost, StrategyContext, ppo_step, resolve_strategy

    torch.set_num_threads(int(task["threads"]))
    host = PluginHost(list(task.get("plugins", [])), warn=lambda _message: None).load()
    after_import = current_rss_bytes()
    context = build_probe_context(task, host)
    model = context.model.train()
    batch = context.rollout_batch()
    after_build = current_rss_bytes()
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
    after_apply = current_rss_bytes()
    workload_only = reset_peak_rss()
    step = ppo_step(model, batch)
    for _ in range(int(task.get("steps", STEPS))):
        step()
    peak = peak_rss_bytes()
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

    from keisei_core.plugin import ppo_loss

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
    return child_main(_measure)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
