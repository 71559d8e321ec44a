"""The stochastic path: does ``get_action_and_value(deterministic=False)`` sample like eager?

Rollouts sample; the deterministic comparison alone lets a strategy through whose
sampler ignores the legal mask or draws from another distribution. Here the compiled
model samples at every validated batch size (eval mode, no grad, seeded), and at the
largest batch of at most 64 several times more, until about ``draws`` actions are drawn.

Every drawn action must be legal. The draws are then tested against eager's own
distribution for the same rows (the masked softmax of eager's logits, the distribution
the actor-critic mixin samples from; computed exactly, so eager's sampling noise does
not enter the test and eager need not sample): a draw ``a`` from a row whose actions,
ordered by eager probability (largest first), have cumulative probabilities ``F``
becomes ``u = F(before a) + V * p(a)`` with ``V`` uniform on [0, 1] (the randomised
probability integral transform for discrete distributions). Whatever each row's
distribution, the ``u`` are independent and uniform on [0, 1] exactly when the draws
follow eager's distributions, so one chi-square test over all draws (``BINS`` equal
bins) answers for every row at once. Ordering by probability makes the test sensitive
to what goes wrong in practice: mass moved to more likely actions (a sharper policy,
argmax) or less likely ones (a flatter one, a wrong temperature or mask).

False-alarm rate: ``ALPHA`` = 1e-4 per validation (the draws are seeded, so a given
strategy and seed always get the same verdict; across seeds a correct strategy fails one
time in 10,000).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from keisei_core.actor_critic import masked_log_probs
from keisei_core.compile.equivalence import CheckInputs
from keisei_core.compile.report import SamplingCheck, Tolerance

ALPHA = 1e-4
BINS = 9
DEFAULT_DRAWS = 512
REPEAT_BATCH_LIMIT = 64


def chi_square_sf(statistic: float, degrees: int) -> float:
    """P(X >= statistic) for X chi-square with an even number of degrees of freedom
    (closed form: a Poisson tail)."""
    if degrees <= 0 or degrees % 2:
        raise ValueError(f"closed form needs an even number of degrees of freedom, got {degrees}")
    half = statistic / 2.0
    term, total = 1.0, 1.0
    for k in range(1, degrees // 2):
        term *= half / k
        total += term
    return min(1.0, math.exp(-half) * total)


def _repeat_plan(inputs: Sequence[CheckInputs], draws: int) -> list[tuple[CheckInputs, int]]:
    small = [d for d in inputs if d.batch_size <= REPEAT_BATCH_LIMIT]
    repeat = max(small, key=lambda d: d.batch_size) if small else min(inputs, key=lambda d: d.batch_size)
    once = sum(d.batch_size for d in inputs)
    extra = max(0, math.ceil((draws - once) / repeat.batch_size))
    return [(d, 1 + (extra if d is repeat else 0)) for d in inputs]


def _pit(probs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # probs (B, A) float64, actions (B,) legal: u = F(before a) + V * p(a), in descending-probability order.
    order = torch.argsort(probs, dim=-1, descending=True, stable=True)
    sorted_probs = probs.gather(-1, order)
    cumulative = sorted_probs.cumsum(-1)
    rank = torch.argsort(order, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    p_action = probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    before = cumulative.gather(-1, rank.unsqueeze(-1)).squeeze(-1) - p_action
    v = torch.rand(actions.shape[0], generator=generator, dtype=torch.float64)
    return (before + v * p_action).clamp(0.0, 1.0)


def check_sampling(
    compiled: nn.Module,
    inputs: Sequence[CheckInputs],
    eager_logits: Mapping[int, torch.Tensor],
    *,
    tolerance: Tolerance,
    seed: int = 0,
    draws: int = DEFAULT_DRAWS,
    alpha: float = ALPHA,
    log_prob_slack: float = 0.0,
) -> SamplingCheck:
    """Sample from ``compiled`` at every input and test the draws against eager's distributions.

    ``eager_logits``: eager's eval-mode logits per batch size (validation computed them).
    ``log_prob_slack``: added to the log-probability tolerance -- twice the largest
    log-probability difference validation accepted (where the float64 referee found eager
    the less accurate one, eager's log-probabilities are not the bar).
    """
    generator = torch.Generator().manual_seed(seed * 9176 + 17)
    values: list[torch.Tensor] = []
    illegal = 0
    total = 0
    worst_log_prob = 0.0
    log_prob_ok = True
    was = compiled.training
    try:
        compiled.eval()
        for data, calls in _repeat_plan(inputs, draws):
            logits = eager_logits[data.batch_size].detach().to("cpu")
            masks = data.masks.to("cpu")
            _, log_probs = masked_log_probs(logits.double(), masks)
            probs = log_probs.exp()
            for call in range(calls):
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(seed * 1_000_003 + data.batch_size * 101 + call)
                    action, log_prob, _value = compiled.get_action_and_value(  # type: ignore[operator]
                        data.obs, data.masks, deterministic=False
                    )
                action = action.detach().to("cpu").long().reshape(-1)
                if action.shape[0] != data.batch_size:
                    raise ValueError(f"returned {action.shape[0]} actions for a batch of {data.batch_size}")
                total += data.batch_size
                in_range = (action >= 0) & (action < masks.shape[-1])
                legal = in_range.clone()
                legal[in_range] = masks[in_range].gather(-1, action[in_range].unsqueeze(-1)).squeeze(-1)
                illegal += int((~legal).sum())
                if not bool(legal.any()):
                    continue
                rows = legal.nonzero().squeeze(-1)
                values.append(_pit(probs[rows], action[rows], generator))
                expected = log_probs[rows].gather(-1, action[rows].unsqueeze(-1)).squeeze(-1)
                got = log_prob.detach().to("cpu", torch.float64).reshape(-1)[rows]
                diff = (got - expected).abs().nan_to_num(nan=math.inf)
                worst_log_prob = max(worst_log_prob, float(diff.max()))
                log_prob_ok &= bool((diff <= tolerance.atol + log_prob_slack + tolerance.rtol * expected.abs()).all())
    except Exception as exc:  # a sampler that raises is a failed check, with its reason
        from keisei_core.oneline import one_line

        return SamplingCheck(total, illegal, BINS, math.nan, 0.0, alpha, worst_log_prob, False, False,
                             error=f"raised {one_line(exc, limit=200)}")
    finally:
        compiled.train(was)
    pits = torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)
    statistic, p_value = _uniformity(pits)
    passed = illegal == 0 and log_prob_ok and p_value >= alpha
    return SamplingCheck(total, illegal, BINS, statistic, p_value, alpha, worst_log_prob, log_prob_ok, passed)


def _uniformity(values: torch.Tensor) -> tuple[float, float]:
    """Pearson's chi-square of ``values`` in BINS equal bins of [0, 1] and its p-value."""
    n = int(values.numel())
    if n == 0:
        return math.nan, 0.0
    counts = torch.bincount((values * BINS).long().clamp(max=BINS - 1), minlength=BINS).double()
    expected = n / BINS
    statistic = float(((counts - expected) ** 2 / expected).sum())
    return statistic, chi_square_sf(statistic, BINS - 1)
