"""What a training checkpoint says besides its weights: architecture tag and counters.

Keisei 2026's ``save_checkpoint`` writes ``{"model_state_dict", "optimizer_state_dict",
"epoch", "step", "world_size", "rng_states": {"python", "numpy", "torch_cpu"[, "torch_cuda"]},
"architecture"?, "scheduler_state_dict"?, "grad_scaler_state_dict"?}``. Keisei 2025's holds
``model_state_dict``, ``optimizer_state_dict`` and counters such as ``global_timestep``.
keisei reads the weights; of the rest it reports the architecture tag (which picks or
checks the model) and the integer counters. Optimizer, scheduler, scaler and RNG states are
listed among the other entries, not restored: they belong to the training run that wrote
them. Importing this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ARCHITECTURE_KEY = "architecture"
# Integer counters of Keisei's trainers (2026: epoch, step, world_size; 2025: timesteps, episodes).
COUNTER_KEYS = ("epoch", "step", "world_size", "global_timestep", "total_episodes_completed")


def architecture_tag(obj: Mapping[Any, Any]) -> str | None:
    tag = obj.get(ARCHITECTURE_KEY)
    return tag if isinstance(tag, str) and tag else None


def counters(obj: Mapping[Any, Any]) -> dict[str, int]:
    return {
        key: int(obj[key])
        for key in COUNTER_KEYS
        if isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool)
    }
