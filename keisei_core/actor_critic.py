"""The actor-critic interface every keisei model satisfies, and the mixin that provides it.

A network only has to implement ``forward(obs) -> (policy_logits (B, A), value (B,))``;
:class:`ActorCriticMixin` adds the two PPO methods with legal-action masking.

Masking rules (Keisei defect 1 is not repeated):
- illegal logits are replaced by the dtype's finite minimum, so fp16/bf16 stay finite;
- a row with no legal action raises :class:`~keisei_core.errors.InputError` naming the
  rows -- a terminal position must be handled by the environment, never sampled from;
- a 1-D mask of length A applies to every row.
Log-probabilities, entropies and values are float32 for float32/bf16/fp16 networks
(float64 for float64 networks).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from keisei_core.errors import InputError


@runtime_checkable
class ActorCriticProtocol(Protocol):
    """What the benchmark engine, strategies and PPO code rely on."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def get_action_and_value(
        self, obs: torch.Tensor, legal_mask: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, legal_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def check_observations(obs: torch.Tensor) -> None:
    if not isinstance(obs, torch.Tensor):
        raise InputError(f"observations must be a torch.Tensor, got {type(obs).__name__}")
    if obs.dim() != 4:
        raise InputError(f"observations must be 4-D (B, C, H, W), got shape {tuple(obs.shape)}")
    if not obs.is_floating_point():
        raise InputError(f"observations must be floating point, got {obs.dtype}")
    if not bool(torch.isfinite(obs).all()):
        bad = torch.nonzero(~torch.isfinite(obs).flatten(1).all(dim=1)).flatten().tolist()
        raise InputError(f"observations contain NaN or inf in rows {bad[:8]}")


def masked_log_probs(
    logits: torch.Tensor, legal_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``legal_mask`` against ``logits`` and return (masked logits, float32 log-probs)."""
    batch, num_actions = logits.shape
    if legal_mask is not None:
        if not isinstance(legal_mask, torch.Tensor):
            raise InputError(f"legal_mask must be a torch.Tensor, got {type(legal_mask).__name__}")
        if legal_mask.dtype != torch.bool:
            raise InputError(f"legal_mask must have dtype torch.bool, got {legal_mask.dtype}")
        if legal_mask.dim() == 1:
            legal_mask = legal_mask.unsqueeze(0)
        if legal_mask.dim() != 2 or legal_mask.shape[1] != num_actions or legal_mask.shape[0] not in (1, batch):
            raise InputError(
                f"legal_mask must have shape ({batch}, {num_actions}) or ({num_actions},), "
                f"got {tuple(legal_mask.shape)}"
            )
        has_legal = legal_mask.any(dim=1)
        if not bool(has_legal.all()):
            rows = torch.nonzero(~has_legal).flatten().tolist()
            raise InputError(
                f"legal_mask rows {rows[:8]} have no legal action; a terminal position cannot be "
                "acted in (end the episode before asking the policy)"
            )
        legal_mask = legal_mask.to(logits.device)
        logits = logits.masked_fill(~legal_mask, torch.finfo(logits.dtype).min)
    # Low precision is promoted to float32; float64 stays float64 (casting its finite
    # minimum down to float32 would make masked logits -inf and entropy gradients NaN).
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    log_probs = torch.log_softmax(logits.to(compute), dim=-1)
    return logits, log_probs


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    # Masked entries have probability exactly 0; where() keeps 0 * (huge negative) out.
    return -torch.where(probs > 0, probs * log_probs, torch.zeros_like(log_probs)).sum(dim=-1)


class ActorCriticMixin:
    """Adds ``get_action_and_value`` and ``evaluate_actions`` to any ``nn.Module`` whose
    ``forward(obs)`` returns ``(policy_logits (B, A), value (B,))``.

    Both methods call ``self(obs)``, so a module compiled in place (``module.compile()``)
    or with a wrapped forward runs its compiled code here too.
    """

    def _policy_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_observations(obs)
        logits, value = self(obs)  # type: ignore[operator]
        if logits.dim() != 2 or logits.shape[0] != obs.shape[0]:
            raise InputError(
                f"{type(self).__name__}.forward returned logits of shape {tuple(logits.shape)}, "
                f"expected ({obs.shape[0]}, num_actions)"
            )
        return logits, value.reshape(-1)

    def get_action_and_value(
        self, obs: torch.Tensor, legal_mask: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pick an action per row (sampled, or the best legal one when deterministic)."""
        logits, value = self._policy_and_value(obs)
        masked, log_probs = masked_log_probs(logits, legal_mask)
        if deterministic:
            action = masked.argmax(dim=-1)
        else:
            action = torch.multinomial(log_probs.exp(), num_samples=1).squeeze(-1)
        log_prob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return action, log_prob, value.to(log_prob.dtype)

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, legal_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of given actions under the (masked) policy, and the value."""
        logits, value = self._policy_and_value(obs)
        num_actions = logits.shape[1]
        if not isinstance(actions, torch.Tensor) or actions.dtype not in (torch.int64, torch.int32):
            raise InputError("actions must be an integer tensor (torch.long) of shape (B,)")
        if actions.shape != (logits.shape[0],):
            raise InputError(f"actions must have shape ({logits.shape[0]},), got {tuple(actions.shape)}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= num_actions):
            raise InputError(
                f"actions must lie in [0, {num_actions}); got values from {int(actions.min())} "
                f"to {int(actions.max())}"
            )
        _, log_probs = masked_log_probs(logits, legal_mask)
        actions = actions.long().to(log_probs.device)
        if legal_mask is not None:
            rows_mask = legal_mask if legal_mask.dim() == 2 else legal_mask.unsqueeze(0)
            legal = rows_mask.to(actions.device).expand(logits.shape[0], -1).gather(-1, actions.unsqueeze(-1))
            if not bool(legal.all()):
                rows = torch.nonzero(~legal.squeeze(-1)).flatten().tolist()
                raise InputError(f"actions in rows {rows[:8]} are illegal under legal_mask")
        log_prob = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return log_prob, _entropy(log_probs), value.to(log_prob.dtype)
