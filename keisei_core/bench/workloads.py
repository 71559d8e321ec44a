"""The calls the built-in probes measure: an acting step and one PPO update step.

Acting is ``get_action_and_value(obs, legal_mask)`` under ``no_grad``: what a rollout
worker waits for, masking and sampling included (not just ``forward``, which is where
the original Keisei compiled path stopped -- defect 2).

The PPO update is Keisei's: ``evaluate_actions`` on a minibatch, clipped surrogate policy
loss (clip 0.2), squared-error value loss (coefficient 0.5), entropy bonus (0.01),
backward, gradient-norm clipping at 0.5 and an Adam step (lr 3e-4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.bench.probe_api import RolloutBatch

PPO_CLIP = 0.2
VALUE_COEF = 0.5
ENTROPY_COEF = 0.01
MAX_GRAD_NORM = 0.5
LEARNING_RATE = 3e-4


def act_call(model: Any, obs: torch.Tensor, masks: torch.Tensor) -> Callable[[], Any]:
    """A closure doing one acting step of ``model`` on ``obs``."""
    import torch

    def call() -> Any:
        with torch.no_grad():
            return model.get_action_and_value(obs, masks)

    return call


def forward_call(model: Any, obs: torch.Tensor) -> Callable[[], Any]:
    """A closure doing one plain network evaluation (policy logits and value)."""
    import torch

    def call() -> Any:
        with torch.no_grad():
            return model(obs)

    return call


def ppo_loss(model: Any, batch: RolloutBatch) -> torch.Tensor:
    import torch

    log_prob, entropy, value = model.evaluate_actions(batch.observations, batch.actions, batch.legal_masks)
    ratio = torch.exp(log_prob - batch.old_log_probs)
    surrogate = torch.min(
        ratio * batch.advantages,
        torch.clamp(ratio, 1.0 - PPO_CLIP, 1.0 + PPO_CLIP) * batch.advantages,
    )
    policy_loss = -surrogate.mean()
    value_loss = (batch.returns - value.float()).pow(2).mean()
    return policy_loss + VALUE_COEF * value_loss - ENTROPY_COEF * entropy.mean()


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return params


def ppo_step(model: Any, batch: RolloutBatch) -> Callable[[], Any]:
    """A closure doing one full PPO update step. It returns the loss tensor (not a float),
    so timing does not include a device-to-host copy per step."""
    import torch

    params = trainable_parameters(model)
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)

    def step() -> Any:
        optimizer.zero_grad(set_to_none=True)
        loss = ppo_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        return loss

    return step
