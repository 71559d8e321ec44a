"""Policy-level validation for quantized strategies (``precision="int8"``).

A quantized network is not equal to eager output by output, and no element-wise
tolerance says whether it is still the same *agent*. What matters for an actor-critic
is what acting and learning see, so per validation batch (eval mode, legal masks):

- ``kl``: mean over rows of KL(eager || quantized) of the masked policies, in nats;
- ``top1``: the fraction of rows whose deterministic action (``get_action_and_value``,
  ``deterministic=True``) agrees with eager's; a pick within ``tie_margin`` nats of
  eager's best legal log-probability counts as agreeing (a near-tie may break either way);
- ``value``: the largest ``|value - eager value|``;
- ``legal``: the fraction of sampled actions (``deterministic=False``) that are legal
  with a finite log-probability, and of deterministic picks that are legal: must be 1.

Each is checked against the precision's :class:`PolicyThresholds` (docs/compilation.md,
"Quantized strategies", says why these values). This module imports no torch at import
time (the report holds its types).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.errors import InputError
from keisei_core.specs import QUANTIZED_PRECISIONS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.compile.equivalence import CheckInputs

METRICS = ("kl", "top1", "value", "legal")


@attrs.frozen
class PolicyThresholds:
    """What a quantized policy must meet per batch: ``kl`` (mean nats, at most),
    ``top1`` (agreement fraction, at least; near-ties within ``tie_margin`` nats agree),
    ``value`` (largest absolute error, at most). Every action must be legal."""

    kl: float = attrs.field(validator=attrs.validators.ge(0.0))
    top1: float = attrs.field(validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    value: float = attrs.field(validator=attrs.validators.ge(0.0))
    tie_margin: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))


DEFAULT_POLICY_THRESHOLDS: dict[str, PolicyThresholds] = {
    "int8": PolicyThresholds(kl=0.01, top1=0.9, value=0.05, tie_margin=0.1),
}


def is_quantized(precision: str | None) -> bool:
    """Whether ``precision`` is validated here instead of output by output."""
    return precision in QUANTIZED_PRECISIONS


def resolve_policy_thresholds(
    precision: str, thresholds: PolicyThresholds | Mapping[str, PolicyThresholds] | None = None
) -> PolicyThresholds:
    """``thresholds`` as given (one for all, or per precision), else the default."""
    if precision not in DEFAULT_POLICY_THRESHOLDS:
        raise InputError(f"no policy thresholds for precision {precision!r}; expected one of {sorted(DEFAULT_POLICY_THRESHOLDS)}")
    if isinstance(thresholds, PolicyThresholds):
        return thresholds
    if thresholds is not None and precision in thresholds:
        return thresholds[precision]
    return DEFAULT_POLICY_THRESHOLDS[precision]


@attrs.frozen
class PolicyCheck:
    """One metric of one validation batch: ``found`` against ``threshold`` (an upper
    bound for ``kl`` and ``value``, a lower bound for ``top1`` and ``legal``)."""

    batch_size: int
    mode: str
    precision: str
    metric: str = attrs.field(validator=attrs.validators.in_(METRICS))
    found: float
    threshold: float
    passed: bool

    @property
    def at_least(self) -> bool:
        return self.metric in ("top1", "legal")

    def describe(self) -> str:
        words = {
            "kl": "mean KL divergence of the masked policy",
            "top1": "top-1 legal-action agreement",
            "value": "largest value error",
            "legal": "legal sampled actions",
        }[self.metric]
        relation = "<" if self.at_least else ">"
        if self.passed:
            relation = ">=" if self.at_least else "<="
        return f"{words} at batch {self.batch_size} ({self.mode}): {self.found:.3g} {relation} {self.threshold:g}"


def _judge(batch: int, precision: str, metric: str, found: float, threshold: float) -> PolicyCheck:
    at_least = metric in ("top1", "legal")
    passed = math.isfinite(found) and (found >= threshold if at_least else found <= threshold)
    return PolicyCheck(batch, "eval", precision, metric, found, threshold, passed)


def masked_kl(eager_logits: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """KL(eager || other) per row over the legal actions, float64, in nats."""
    import torch

    from keisei_core.actor_critic import masked_log_probs

    _, eager_lp = masked_log_probs(eager_logits.double(), masks)
    _, other_lp = masked_log_probs(logits.double(), masks)
    terms = eager_lp.exp() * (eager_lp - other_lp)
    return torch.where(masks.expand_as(terms), terms, torch.zeros_like(terms)).sum(dim=-1)


def policy_metrics(
    eager: nn.Module, candidate: nn.Module, data: CheckInputs, thresholds: PolicyThresholds, *, seed: int = 0
) -> dict[str, float]:
    """The four metrics of one batch (both models in eval mode, no grad)."""
    import torch

    from keisei_core.actor_critic import masked_log_probs

    obs, masks = data.obs, data.masks
    with torch.no_grad():
        # The PPO pair; multi-head models return their extra heads after it (keisei_core.heads).
        eager_logits, eager_value = eager(obs)[:2]
        logits, value = candidate(obs)[:2]
        kl = masked_kl(eager_logits, logits, masks)
        _, eager_lp = masked_log_probs(eager_logits.double(), masks)
        picked, _, _ = candidate.get_action_and_value(obs, masks, deterministic=True)  # type: ignore[operator]
        best = eager_lp.max(dim=-1).values
        gap = best - eager_lp.gather(-1, picked.long().unsqueeze(-1)).squeeze(-1)
        agree = gap <= thresholds.tie_margin
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 7919 + data.batch_size)
            sampled, sampled_lp, _ = candidate.get_action_and_value(obs, masks, deterministic=False)  # type: ignore[operator]
        legal_sampled = masks.gather(-1, sampled.long().unsqueeze(-1)).squeeze(-1) & torch.isfinite(sampled_lp)
        legal_picked = masks.gather(-1, picked.long().unsqueeze(-1)).squeeze(-1)
        value_error = (value.double().reshape(-1) - eager_value.double().reshape(-1)).abs()
    return {
        "kl": float(kl.mean()) if bool(torch.isfinite(kl).all()) else math.inf,
        "top1": float(agree.double().mean()),
        "value": float(value_error.nan_to_num(nan=math.inf).max()),
        "legal": float(torch.cat([legal_sampled, legal_picked]).double().mean()),
    }


def run_policy_checks(
    eager: nn.Module,
    candidate: nn.Module,
    inputs: Sequence[CheckInputs],
    *,
    precision: str,
    thresholds: PolicyThresholds,
    seed: int = 0,
) -> list[PolicyCheck]:
    """Every metric of every batch against ``thresholds`` (eval mode; models' train/eval
    flags and buffers are left as found)."""
    from keisei_core.compile.equivalence import preserved_state

    checks: list[PolicyCheck] = []
    bounds: dict[str, Any] = {"kl": thresholds.kl, "top1": thresholds.top1, "value": thresholds.value, "legal": 1.0}
    with preserved_state(eager, candidate):
        eager.eval()
        candidate.eval()
        for data in inputs:
            found = policy_metrics(eager, candidate, data, thresholds, seed=seed)
            checks.extend(_judge(data.batch_size, precision, m, found[m], bounds[m]) for m in METRICS)
    return checks
