"""The ``train-memory`` probe: peak memory of PPO update steps.

The engine's ``memory`` probe measures the acting call; activation checkpointing only
changes what a training step keeps alive, so this probe runs the same measurement with
the cell in training mode: on CPU the peak resident set size of a fresh child process
that builds the cell, applies its strategy for training and runs PPO update steps; on
CUDA the allocator's peak over those steps. It reuses the engine's measurement as is.
"""

from __future__ import annotations

import attrs

from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported


def run_train_memory(context: ProbeContext) -> ProbeResult:
    from keisei_core.bench.builtin_probes import run_memory

    if not context.training:
        raise ProbeUnsupported("train-memory measures training steps; the cell is not in training mode")
    result = run_memory(context)
    return attrs.evolve(
        result,
        metric="train-memory",
        extra={**result.extra, "workload": "PPO update steps (evaluate_actions, loss, backward, Adam)"},
    )
