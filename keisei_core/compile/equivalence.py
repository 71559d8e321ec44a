"""Does the compiled model compute what the eager model computes? Output by output.

Both models see the same observation-like inputs (one-hot piece planes, constant hand,
side-to-move and move-count planes: :func:`keisei_core.observations.make_observations`)
and realistic legal masks at every batch size. In eval mode (no grad) they compare
``forward``, ``get_action_and_value(deterministic=True)`` with masks, and
``evaluate_actions`` of sampled legal actions. In train mode (grad enabled, as in a
PPO update) the same, plus the BatchNorm running statistics a train forward leaves
behind and every parameter's gradient of a PPO-like loss. Train-mode calls change
running statistics and gradients, so each model's buffers and grads are saved before
and restored after every call: validation leaves both models as it found them.

Eager float32 is a reference, not the truth. When an output misses the tolerance and
the compiled model computes in the model's own dtype, a float64 copy of the eager model
referees (as torch's own accuracy checker does with ``fp64_ref``): the compiled output
passes if its error against float64 is at most twice eager's plus a tenth of the
tolerance. (Eager's train-mode BatchNorm gradients at batch 1 can be 4e-3 off float64
where Inductor's are 5e-7.)
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.actor_critic import masked_log_probs
from keisei_core.compile.report import EquivalenceCheck, Tolerance
from keisei_core.compile.wrapping import add_forward_wrapper
from keisei_core.heads import extra_head_outputs, head_training_loss
from keisei_core.observations import make_legal_masks, make_observations

Outputs = dict[str, torch.Tensor]

REFEREE_MULTIPLIER = 2.0


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


def _ppo_like_loss(log_prob: torch.Tensor, entropy: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return -log_prob.mean() - 0.01 * entropy.mean() + 0.5 * value.float().pow(2).mean()


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([t.detach().to("cpu", torch.float64).reshape(-1) for t in tensors])


def _phase(model: nn.Module, mode: str) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(preserved_state(model))
    stack.enter_context(torch.no_grad() if mode == "eval" else torch.enable_grad())
    model.train(mode == "train")
    return stack


def collect_outputs(model: nn.Module, data: CheckInputs, mode: str) -> Outputs:
    """Every output validation compares, each call from the model's unchanged state."""
    obs, masks = data.obs, data.masks
    out: Outputs = {}
    with _phase(model, mode):
        raw = model(obs)
        logits, value = raw[:2]
        out["forward.logits"], out["forward.value"] = logits.detach(), value.detach().reshape(-1)
        out.update(extra_head_outputs(model, raw))
        if mode == "train":
            out["forward.buffers"] = _flat([b for _, b in model.named_buffers()])
    with _phase(model, mode):
        action, log_prob, value = model.get_action_and_value(obs, masks, deterministic=True)  # type: ignore[operator]
        out["get_action_and_value.action"] = action.detach()
        out["get_action_and_value.log_prob"] = log_prob.detach()
        out["get_action_and_value.value"] = value.detach()
    with _phase(model, mode):
        log_prob, entropy, value = model.evaluate_actions(obs, data.actions, masks)  # type: ignore[operator]
        out["evaluate_actions.log_prob"] = log_prob.detach()
        out["evaluate_actions.entropy"] = entropy.detach()
        out["evaluate_actions.value"] = value.detach()
        if mode == "train":
            params = [p for p in model.parameters() if p.requires_grad]
            for param in params:
                param.grad = None
            loss = _ppo_like_loss(log_prob, entropy, value)
            heads_loss = head_training_loss(model, model(obs))  # extra heads (W/D/L, score), if any
            (loss if heads_loss is None else loss + heads_loss).backward()
            # A parameter the loss does not reach counts as a zero gradient.
            out["backward.grad"] = _flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
    return out


def _log_prob_of(logits: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    # As the actor-critic mixin computes it (float32 log-softmax of the masked logits).
    _, log_probs = masked_log_probs(logits, masks)
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


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


def _relative_l2(compiled: torch.Tensor, eager: torch.Tensor) -> float:
    if compiled.shape != eager.shape:
        return float("inf")
    if not bool(torch.isfinite(compiled).all()):
        return float("nan")
    norm = float(eager.norm())
    diff = float((compiled - eager).norm())
    if norm == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / norm


def _action_gap(eager_logits: torch.Tensor, masks: torch.Tensor, eager_action: torch.Tensor, compiled_action: torch.Tensor, tol: Tolerance) -> tuple[float, float, bool]:
    # Near-ties may break either way: the compiled action passes when its eager logit is
    # within tolerance of the best legal eager logit (an illegal pick is never close).
    masked = eager_logits.detach().double().masked_fill(~masks, -float("inf"))
    best = masked.gather(-1, eager_action.long().unsqueeze(-1)).squeeze(-1)
    picked = masked.gather(-1, compiled_action.long().unsqueeze(-1)).squeeze(-1)
    gap = (best - picked).abs().nan_to_num(nan=float("inf"))
    if gap.numel() == 0:
        return 0.0, 0.0, True
    allowed = tol.atol + tol.rtol * best.abs()
    rel = (gap / best.abs().clamp_min(tol.atol)).max().item()
    return gap.max().item(), rel, bool((gap <= allowed).all())


@attrs.define
class _Comparison:
    """The checks of one (batch, mode) and how to re-judge the failed ones with a referee."""

    data: CheckInputs
    mode: str
    dtype: str
    tol: Tolerance
    checks: list[EquivalenceCheck] = attrs.field(factory=list)

    def add(self, key: str, found: tuple[float, float, bool], rtol: float | None = None, atol: float | None = None) -> None:
        method, output = key.split(".")
        self.checks.append(EquivalenceCheck(
            self.data.batch_size, self.mode, self.dtype, method, output, found[0], found[1],
            self.tol.atol if atol is None else atol, self.tol.rtol if rtol is None else rtol, found[2],
        ))

    def judge(self, compiled: Outputs, eager: Outputs) -> None:
        masks = self.data.masks
        for key in compiled:
            problem = _placement_problem(compiled[key], eager[key]) if key not in _FLATTENED else None
            if problem is not None:
                method, output = key.split(".")
                self.checks.append(EquivalenceCheck(
                    self.data.batch_size, self.mode, self.dtype, method, output, math.inf, math.inf,
                    self.tol.atol, self.tol.rtol, False, problem=problem,
                ))
                continue
            if key == "get_action_and_value.action":
                found = _action_gap(eager["forward.logits"], masks, eager[key], compiled[key], self.tol)
            elif key == "get_action_and_value.log_prob":
                # The log-prob of the compiled model's own pick, against eager's for that action.
                expected = _log_prob_of(eager["forward.logits"], masks, compiled["get_action_and_value.action"])
                found = _differences(compiled[key], expected, self.tol)
            elif key == "backward.grad":
                rel = _relative_l2(compiled[key], eager[key])
                worst = (compiled[key] - eager[key]).abs().max().item() if compiled[key].numel() else 0.0
                self.add(key, (worst, rel, rel <= self.tol.grad_rtol), rtol=self.tol.grad_rtol, atol=0.0)
                continue
            else:
                found = _differences(compiled[key], eager[key], self.tol)
            self.add(key, found)

    def referee(self, compiled: Outputs, eager: Outputs, reference: Outputs) -> None:
        """Re-judge failed checks by each model's error against float64."""
        masks = self.data.masks
        for index, check in enumerate(self.checks):
            key = f"{check.method}.{check.output}"
            if check.passed or check.problem is not None or key == "get_action_and_value.action":
                continue
            if key == "backward.grad":
                eager_error = _relative_l2(eager[key], reference[key])
                compiled_error = _relative_l2(compiled[key], reference[key])
                slack = self.tol.grad_rtol / 10
            else:
                if key == "get_action_and_value.log_prob":
                    action = compiled["get_action_and_value.action"]
                    truth = _log_prob_of(reference["forward.logits"], masks, action)
                    eager_value = _log_prob_of(eager["forward.logits"], masks, action)
                else:
                    truth, eager_value = reference[key], eager[key]
                eager_error = _max_abs(eager_value, truth)
                compiled_error = _max_abs(compiled[key], truth)
                slack = self.tol.atol / 10
            passed = compiled_error <= REFEREE_MULTIPLIER * eager_error + slack
            self.checks[index] = attrs.evolve(
                check, passed=passed, referee_eager_error=eager_error, referee_compiled_error=compiled_error
            )


_FLATTENED = frozenset({"forward.buffers", "backward.grad"})  # collected as float64 on the CPU


def _placement_problem(compiled: torch.Tensor, eager: torch.Tensor) -> str | None:
    # Callers feed outputs on into losses and buffers sized for eager's dtype and device:
    # a float16 or CPU copy of a float32 CUDA output is a different output, however close.
    if compiled.dtype != eager.dtype:
        return f"dtype {str(compiled.dtype).removeprefix('torch.')}, eager's is {str(eager.dtype).removeprefix('torch.')}"
    if compiled.device.type != eager.device.type:
        return f"on {compiled.device.type}, eager's is on {eager.device.type}"
    if tuple(compiled.shape) != tuple(eager.shape):
        return f"shape {tuple(compiled.shape)}, eager's is {tuple(eager.shape)}"
    return None


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    diff = (a.detach().double().cpu() - b.detach().double().cpu()).abs()
    return diff.nan_to_num(nan=float("inf")).max().item() if diff.numel() else 0.0


def run_checks(
    eager: nn.Module,
    compiled: nn.Module,
    inputs: Sequence[CheckInputs],
    *,
    modes: Sequence[str],
    precision: str,
    tolerance: Tolerance,
    referee: bool = True,
    eager_logits: dict[int, torch.Tensor] | None = None,
) -> list[EquivalenceCheck]:
    """Every check for every batch in every mode (``eval`` and/or ``train``), in order.

    ``referee``: allow the float64 referee for failed checks (the caller disables it
    when the compiled model computes in a lower precision than the model).
    ``eager_logits``: filled with eager's eval-mode logits per batch size (the sampling
    check tests draws against them).
    """
    checks: list[EquivalenceCheck] = []
    float64: Callable[[], nn.Module] = _lazy_float64(eager)
    for mode in modes:
        for data in inputs:
            comparison = _Comparison(data, mode, precision, tolerance)
            eager_out = collect_outputs(eager, data, mode)
            if eager_logits is not None and mode == "eval":
                eager_logits[data.batch_size] = eager_out["forward.logits"]
            compiled_out = collect_outputs(compiled, data, mode)
            comparison.judge(compiled_out, eager_out)
            if referee and not all(c.passed for c in comparison.checks):
                reference = collect_outputs(float64(), data, mode)
                comparison.referee(compiled_out, eager_out, reference)
            checks.extend(comparison.checks)
    return checks


def _float32_outputs(module: nn.Module, inner: Callable[..., Any], obs: torch.Tensor) -> Any:
    # The network computes in float64; its outputs leave as float32 like the models it
    # referees, because the actor-critic masking fills illegal logits with the dtype's
    # finite minimum, which the float32 log-softmax would turn into -inf (NaN gradients).
    return tuple(output.float() for output in inner(obs.double()))


def _input_dtype(model: nn.Module) -> torch.dtype:
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    return first.dtype if first is not None else torch.float32


def _lazy_float64(eager: nn.Module) -> Callable[[], nn.Module]:
    made: list[nn.Module] = []

    def get() -> nn.Module:
        if not made:
            referee = add_forward_wrapper(copy.deepcopy(eager).double(), _float32_outputs)
            vars(referee)["keisei_input_dtype"] = _input_dtype(eager)  # a plain attribute, not a buffer
            made.append(referee)
        return made[0]

    return get
