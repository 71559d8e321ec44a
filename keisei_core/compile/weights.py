"""Weight updates: does the compiled model follow new weights, as every PPO update needs?

A compiled model that snapshots its weights when applied keeps answering for the old
ones after ``load_state_dict`` (a checkpoint reload) or an optimizer step, and every
output comparison made before the change still passes. So after validation both models
get new weights and are compared again:

- ``load_state_dict`` of perturbed weights (every strategy): the compiled model must
  follow (outputs match a copy of eager with the same weights) or, only when the
  strategy declares ``frozen_weights``, refuse to run with them (a KeiseiError);
- ``in-place``: the parameters are changed in place as an optimizer does (strategies that
  do not declare ``frozen_weights``): the compiled model must follow;
- ``optimizer-step``: one ``torch.optim.SGD`` step with the same gradients on both
  (strategies validated in train mode);
- ``restore``: the original weights loaded back; the compiled model must compute what it
  computed before (it is returned to the caller in that state).

Outputs compared: eval-mode ``forward`` logits and value at one batch, with the
validation tolerance. A change that moves eager's outputs by less than ten tolerances
would prove nothing, so the perturbations are large (about 10 % of each tensor).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from keisei_core.compile.equivalence import CheckInputs, preserved_state
from keisei_core.compile.report import Tolerance, WeightsCheck
from keisei_core.errors import KeiseiError


def _forward(model: nn.Module, data: CheckInputs) -> tuple[torch.Tensor, ...]:
    # Every output head (multi-head models return more than the PPO pair): a strategy
    # stale in any one of them is stale.
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            outputs = tuple(model(data.obs))
        return tuple(
            (out.reshape(-1) if index == 1 else out).detach().to("cpu", torch.float64)
            for index, out in enumerate(outputs)
        )
    finally:
        model.train(was)


def _gap(
    got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...], tol: Tolerance, slack: float = 0.0
) -> tuple[float, bool]:
    worst, ok = 0.0, True
    if len(got) != len(want):
        return math.inf, False
    for a, b in zip(got, want, strict=True):
        if a.shape != b.shape:
            return math.inf, False
        diff = (a - b).abs().nan_to_num(nan=math.inf)
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        ok &= bool((diff <= tol.atol + slack + tol.rtol * b.abs()).all())
    return worst, ok


NOISE_PERIOD = 4099  # a prime: the tiled noise never lines up with a channel or row length


def _noise(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    # Standard normal noise, drawn for one period and tiled: drawing 13 M numbers per
    # step cost seconds on the default ResTower, and any irregular change shows staleness.
    count = math.prod(shape)
    period = torch.randn(min(count, NOISE_PERIOD), generator=generator)
    return period.repeat(-(-count // period.numel()))[:count].reshape(shape) if count else period[:0].reshape(shape)


def perturbed_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Every floating state_dict tensor changed by about 10 % (non-negative ones, such as
    BatchNorm's running variance, stay non-negative); integer entries unchanged."""
    generator = torch.Generator().manual_seed(seed * 31 + 7)
    state = {}
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            state[name] = tensor.clone()
            continue
        base = tensor.detach().to("cpu", torch.float32)
        changed = base * (1 + 0.1 * _noise(base.shape, generator))
        if bool((base < 0).any()) and base.numel() > 0:
            rms = float(base.pow(2).mean().sqrt())
            changed = changed + 0.02 * rms * _noise(base.shape, generator)
        state[name] = changed.to(device=tensor.device, dtype=tensor.dtype)
    return state


def _judge(
    how: str,
    compiled: nn.Module,
    twin: nn.Module,
    data: CheckInputs,
    tol: Tolerance,
    *,
    frozen: bool,
    before: tuple[torch.Tensor, ...] | None,
    slack: float,
    want: tuple[torch.Tensor, ...] | None = None,
) -> WeightsCheck:
    want = _forward(twin, data) if want is None else want
    try:
        got = _forward(compiled, data)
    except KeiseiError as exc:
        from keisei_core.oneline import one_line

        if frozen and how != "restore":
            return WeightsCheck(how, "rejected", math.nan, True, one_line(exc, limit=200))
        why = "" if frozen else " (a strategy that cannot follow weight changes must declare frozen_weights=True)"
        return WeightsCheck(how, "rejected", math.nan, False, f"{one_line(exc, limit=200)}{why}")
    worst, ok = _gap(got, want, tol, slack)
    if ok:
        moved = math.inf if before is None else _gap(want, before, tol)[0]
        return WeightsCheck(how, "followed", worst, True, None if moved > 0 else "the change did not move eager's outputs")
    return WeightsCheck(how, "stale", worst, False)


def _optimizer_step(compiled: nn.Module, twin: nn.Module, data: CheckInputs) -> None:
    # Gradients of a PPO-like loss on eager's copy; the same gradients step both models.
    # preserved_state: the train forward's BatchNorm statistics must not reach the twin only.
    with preserved_state(twin), torch.enable_grad():
        twin.train()
        for param in twin.parameters():
            param.grad = None
        log_prob, entropy, value = twin.evaluate_actions(data.obs, data.actions, data.masks)  # type: ignore[operator]
        loss = -log_prob.mean() - 0.01 * entropy.mean() + 0.5 * value.float().pow(2).mean()
        loss.backward()
        grads = {name: (p.grad.detach().clone() if p.grad is not None else None) for name, p in twin.named_parameters()}
    for name, param in twin.named_parameters():
        param.grad = grads[name]
    params = dict(compiled.named_parameters())
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values() if g is not None)) or 1.0
    weights = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in twin.parameters())) or 1.0
    lr = 0.05 * weights / norm  # a step of 5 % of the weights' norm: large enough to see
    for name, param in params.items():
        grad = grads.get(name)
        param.grad = None if grad is None else grad.to(param.device, param.dtype)
    for model in (twin, compiled):
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.grad is not None], lr=lr)
        optimizer.step()
        for param in model.parameters():
            param.grad = None


def check_weight_updates(
    eager: nn.Module,
    compiled: nn.Module,
    data: CheckInputs,
    *,
    tolerance: Tolerance,
    frozen: bool,
    training: bool,
    seed: int = 0,
    slack: float = 0.0,
) -> list[WeightsCheck]:
    """The checks above, in order; ``compiled`` ends with eager's original weights.

    ``slack``: added to the tolerance's atol -- twice the largest forward difference
    validation accepted (where the float64 referee found eager the less accurate one).
    """
    twin = copy.deepcopy(eager)
    original = {k: v.detach().clone() for k, v in compiled.state_dict().items()}
    checks: list[WeightsCheck] = []
    steps: list[tuple[str, Callable[[], None]]] = []

    def load_new() -> None:
        state = perturbed_state(twin, seed)
        twin.load_state_dict(state)
        compiled.load_state_dict(state)

    def in_place() -> None:
        generator = torch.Generator().manual_seed(seed * 131 + 3)
        with torch.no_grad():
            twin_params = dict(twin.named_parameters())
            for name, param in compiled.named_parameters():
                factor = 1 + 0.1 * _noise(param.shape, generator)
                twin_params[name].mul_(factor.to(twin_params[name].device, twin_params[name].dtype))
                param.mul_(factor.to(param.device, param.dtype))

    steps.append(("load_state_dict", load_new))
    if not frozen:
        steps.append(("in-place", in_place))
        if training:
            steps.append(("optimizer-step", lambda: _optimizer_step(compiled, twin, data)))
    try:
        reference = _forward(twin, data)
        for how, change in steps:
            change()
            want = _forward(twin, data)
            check = _judge(how, compiled, twin, data, tolerance, frozen=frozen, before=reference, slack=slack,
                           want=want)
            checks.append(check)
            if not check.passed:
                break
            reference = want
    finally:
        twin.load_state_dict(original)
        compiled.load_state_dict(original)
    checks.append(_judge("restore", compiled, twin, data, tolerance, frozen=frozen, before=None, slack=slack))
    return checks
