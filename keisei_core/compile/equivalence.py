"""Does the compiled model compute what the eager model computes? Output by output.

Both models see the same observation-like inputs (one-hot piece planes, constant hand,
side-to-move and move-count planes: :func:`keisei_core.observations.make_observations`)
and realistic legal masks at every batch size. In eval mode (no grad) they compare
``forward``, ``get_action_and_value(deterministic=True)`` with masks, and
``evaluate_actions`` of sampled legal actions. In train mode (grad enabled, as in a
PPO update) the same, plus the BatchNorm running statistics a train forward leaves
behind and every parameter's gradient of a PPO-like loss. Train-mode calls change
running statistics and gradients, so both models' buffers and grads are saved before
and restored after each call: validation leaves both models as it found them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import attrs
import torch
from torch import nn

from keisei_core.compile.report import EquivalenceCheck, Tolerance
from keisei_core.observations import make_legal_masks, make_observations


@attrs.frozen
class CheckInputs:
    """One batch of validation inputs."""

    batch_size: int
    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor


def make_check_inputs(
    batch_sizes: Sequence[int],
    observation: tuple[int, int, int],
    num_actions: int,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    seed: int = 0,
) -> list[CheckInputs]:
    """Observation-like inputs, legal masks and legal actions for each batch size."""
    channels, board, _ = observation
    batches = []
    for index, batch in enumerate(batch_sizes):
        batch_seed = seed * 7919 + index * 104729 + batch
        obs = make_observations(batch, channels, board, seed=batch_seed, device=device, dtype=dtype)
        masks = make_legal_masks(batch, num_actions, seed=batch_seed)
        generator = torch.Generator().manual_seed(batch_seed)
        actions = torch.multinomial(masks.float(), 1, generator=generator).squeeze(-1)
        batches.append(CheckInputs(batch, obs, masks.to(device), actions.to(device)))
    return batches


def has_active_dropout(model: nn.Module) -> bool:
    """Dropout makes train-mode outputs random, so they cannot be compared call by call."""
    return any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()
    )


def _differences(compiled: torch.Tensor, eager: torch.Tensor, tol: Tolerance) -> tuple[float, float, bool]:
    a = compiled.detach().to("cpu", torch.float64)
    b = eager.detach().to("cpu", torch.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf"), False
    if a.numel() == 0:
        return 0.0, 0.0, True
    finite = torch.isfinite(b)
    if not bool((torch.isfinite(a) == finite).all()) or not bool((a[~finite] == b[~finite]).all()):
        return float("nan"), float("nan"), False
    diff = (a - b).abs().where(finite, torch.zeros_like(a))
    magnitude = b.abs().where(finite, torch.zeros_like(b))
    significant = magnitude > tol.atol
    rel = (diff[significant] / magnitude[significant]).max().item() if bool(significant.any()) else 0.0
    passed = bool((diff <= tol.atol + tol.rtol * magnitude).all())
    return diff.max().item(), rel, passed


class _Recorder:
    def __init__(self, dtype: str, tol: Tolerance) -> None:
        self.dtype = dtype
        self.tol = tol
        self.checks: list[EquivalenceCheck] = []

    def add(self, batch: int, mode: str, method: str, output: str, max_abs: float, max_rel: float, passed: bool) -> None:
        self.checks.append(
            EquivalenceCheck(batch, mode, self.dtype, method, output, max_abs, max_rel, self.tol.atol, self.tol.rtol, passed)
        )

    def compare(self, batch: int, mode: str, method: str, output: str, compiled: torch.Tensor, eager: torch.Tensor) -> None:
        self.add(batch, mode, method, output, *_differences(compiled, eager, self.tol))


def _masked(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return logits.float().masked_fill(~masks, torch.finfo(torch.float32).min)


def _action_gap(eager_logits: torch.Tensor, masks: torch.Tensor, eager_action: torch.Tensor, compiled_action: torch.Tensor, tol: Tolerance) -> tuple[float, float, bool]:
    # Near-ties may break either way: the compiled action passes when its eager logit is
    # within tolerance of the best legal eager logit (an illegal pick is never close).
    masked = _masked(eager_logits.detach(), masks).double()
    best = masked.gather(-1, eager_action.unsqueeze(-1)).squeeze(-1)
    picked = masked.gather(-1, compiled_action.long().unsqueeze(-1)).squeeze(-1)
    gap = (best - picked).abs()
    allowed = tol.atol + tol.rtol * best.abs()
    max_gap = gap.max().item() if gap.numel() else 0.0
    rel = (gap / best.abs().clamp_min(tol.atol)).max().item() if gap.numel() else 0.0
    return max_gap, rel, bool((gap <= allowed).all())


@contextlib.contextmanager
def preserved_state(*models: nn.Module) -> Iterator[None]:
    """Restore buffers (BatchNorm running statistics), gradients and train/eval flags."""
    saved = []
    for model in models:
        buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        grads = {name: (p.grad.detach().clone() if p.grad is not None else None) for name, p in model.named_parameters()}
        saved.append((model, model.training, buffers, grads))
    try:
        yield
    finally:
        with torch.no_grad():
            for model, training, buffers, grads in saved:
                for name, buffer in model.named_buffers():
                    buffer.copy_(buffers[name])
                for name, param in model.named_parameters():
                    param.grad = grads[name]
                model.train(training)


def _eval_checks(eager: nn.Module, compiled: nn.Module, data: CheckInputs, rec: _Recorder) -> None:
    with preserved_state(eager, compiled), torch.no_grad():
        eager.eval()
        compiled.eval()
        _method_checks(eager, compiled, data, rec, "eval")


def _method_checks(eager: nn.Module, compiled: nn.Module, data: CheckInputs, rec: _Recorder, mode: str) -> None:
    batch, obs, masks = data.batch_size, data.obs, data.masks
    e_logits, e_value = eager(obs)
    c_logits, c_value = compiled(obs)
    rec.compare(batch, mode, "forward", "logits", c_logits, e_logits)
    rec.compare(batch, mode, "forward", "value", c_value.reshape(-1), e_value.reshape(-1))

    e_action, _e_log_prob, e_val = eager.get_action_and_value(obs, masks, deterministic=True)  # type: ignore[operator]
    c_action, c_log_prob, c_val = compiled.get_action_and_value(obs, masks, deterministic=True)  # type: ignore[operator]
    rec.add(batch, mode, "get_action_and_value", "action", *_action_gap(e_logits, masks, e_action, c_action, rec.tol))
    # The log-prob of the compiled model's own pick, against eager's for the same action.
    eager_log_probs = torch.log_softmax(_masked(e_logits.detach(), masks), dim=-1)
    expected = eager_log_probs.gather(-1, c_action.long().unsqueeze(-1)).squeeze(-1)
    rec.compare(batch, mode, "get_action_and_value", "log_prob", c_log_prob, expected)
    rec.compare(batch, mode, "get_action_and_value", "value", c_val, e_val)

    e_lp, e_ent, e_v = eager.evaluate_actions(obs, data.actions, masks)  # type: ignore[operator]
    c_lp, c_ent, c_v = compiled.evaluate_actions(obs, data.actions, masks)  # type: ignore[operator]
    rec.compare(batch, mode, "evaluate_actions", "log_prob", c_lp, e_lp)
    rec.compare(batch, mode, "evaluate_actions", "entropy", c_ent, e_ent)
    rec.compare(batch, mode, "evaluate_actions", "value", c_v, e_v)


def _ppo_like_loss(log_prob: torch.Tensor, entropy: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return -log_prob.mean() - 0.01 * entropy.mean() + 0.5 * value.float().pow(2).mean()


def _train_checks(eager: nn.Module, compiled: nn.Module, data: CheckInputs, rec: _Recorder) -> None:
    batch, obs, masks = data.batch_size, data.obs, data.masks
    with preserved_state(eager, compiled), torch.enable_grad():
        eager.train()
        compiled.train()
        _method_checks(eager, compiled, data, rec, "train")
    with preserved_state(eager, compiled), torch.enable_grad():
        eager.train()
        compiled.train()
        eager(obs)
        compiled(obs)
        e_buffers = dict(eager.named_buffers())
        largest_abs, largest_rel, all_passed = 0.0, 0.0, True
        for name, buffer in compiled.named_buffers():
            abs_diff, rel_diff, passed = _differences(buffer, e_buffers[name], rec.tol)
            largest_abs, largest_rel = max(largest_abs, abs_diff), max(largest_rel, rel_diff)
            all_passed = all_passed and passed
        if e_buffers:
            rec.add(batch, "train", "forward", "buffers", largest_abs, largest_rel, all_passed)
    with preserved_state(eager, compiled), torch.enable_grad():
        eager.train()
        compiled.train()
        for model in (eager, compiled):
            for param in model.parameters():
                param.grad = None
        _ppo_like_loss(*eager.evaluate_actions(obs, data.actions, masks)).backward()  # type: ignore[operator]
        _ppo_like_loss(*compiled.evaluate_actions(obs, data.actions, masks)).backward()  # type: ignore[operator]
        worst, rel, passed = _gradient_differences(eager, compiled, rec.tol)
        rec.checks.append(
            EquivalenceCheck(batch, "train", rec.dtype, "backward", "grad", worst, rel, 0.0, rec.tol.grad_rtol, passed)
        )


def _gradient_differences(eager: nn.Module, compiled: nn.Module, tol: Tolerance) -> tuple[float, float, bool]:
    # (max element difference, relative L2 error over all gradients, passed); a gradient
    # present on one side only, or a non-finite one, fails outright.
    e_params = dict(eager.named_parameters())
    worst, diff_sq, norm_sq = 0.0, 0.0, 0.0
    for name, param in compiled.named_parameters():
        e_grad = e_params[name].grad
        if not param.requires_grad:
            continue
        if (param.grad is None) != (e_grad is None):
            return float("inf"), float("inf"), False
        if param.grad is None or e_grad is None or param.grad.numel() == 0:
            continue
        a, b = param.grad.detach().double().cpu(), e_grad.detach().double().cpu()
        if not bool(torch.isfinite(a).all()):
            return float("nan"), float("nan"), False
        worst = max(worst, (a - b).abs().max().item())
        diff_sq += float((a - b).pow(2).sum())
        norm_sq += float(b.pow(2).sum())
    if norm_sq == 0.0:
        rel = 0.0 if diff_sq == 0.0 else float("inf")
    else:
        rel = (diff_sq / norm_sq) ** 0.5
    return worst, rel, rel <= tol.grad_rtol


def run_checks(
    eager: nn.Module,
    compiled: nn.Module,
    inputs: Sequence[CheckInputs],
    *,
    modes: Sequence[str],
    precision: str,
    tolerance: Tolerance,
) -> list[EquivalenceCheck]:
    """Every check for every batch in every mode (``eval`` and/or ``train``), in order."""
    rec = _Recorder(precision, tolerance)
    for mode in modes:
        for data in inputs:
            if mode == "eval":
                _eval_checks(eager, compiled, data, rec)
            else:
                _train_checks(eager, compiled, data, rec)
    return rec.checks
