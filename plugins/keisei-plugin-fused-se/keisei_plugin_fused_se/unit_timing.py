"""Timing one SE unit in three forms: the eager op sequence, the same sequence compiled
by torch.compile (inductor), and the fused operator. Shared by the ``se-op`` probe and
``python -m keisei_plugin_fused_se.bench``.

The forms are private copies of one unit (same weights) and run on the same inputs;
timings are interleaved (rounds in shuffled order), so ratios pair up round by round and
drift on a shared machine hits every form alike. All timing goes through the core's one
timing primitive (``measure_interleaved``, ``paired_ratio`` and ``time_calls`` of the
plugin API); nothing here reads a clock itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from keisei_core.plugin import SEUnit, Statistics, paired_ratio, time_calls
from keisei_plugin_fused_se.module import FusedSEUnit, unfusable_reason

FORMS = ("eager", "compiled", "fused")


@attrs.frozen
class CapturedUnit:
    """The first fusable SE unit of a model and the inputs it saw in one forward pass."""

    name: str
    unit: SEUnit
    y: Tensor
    residual: Tensor
    units_in_model: int


def capture_first_se_unit(model: nn.Module, obs: Tensor) -> CapturedUnit | None:
    """Run ``model(obs)`` once (eval mode, no grad) and keep the first fusable SE unit's
    real inputs, so the unit is timed on the activations it sees in the model."""
    units = [(n, m) for n, m in model.named_modules() if isinstance(m, SEUnit) and unfusable_reason(m) is None]
    if not units:
        return None
    name, unit = units[0]
    seen: list[tuple[Tensor, Tensor]] = []

    def keep_inputs(_module: nn.Module, args: tuple[Any, ...]) -> None:
        if not seen:
            seen.append((args[0].detach().clone(), args[1].detach().clone()))

    handle = unit.register_forward_pre_hook(keep_inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(obs)
    finally:
        model.train(was_training)
        handle.remove()
    if not seen:
        return None
    y, residual = seen[0]
    return CapturedUnit(name, unit, y, residual, len(units))


def make_forms(unit: SEUnit) -> dict[str, nn.Module]:
    """Three private copies of ``unit``: as it is, torch.compile'd, and fused."""
    return {
        "eager": copy.deepcopy(unit),
        "compiled": torch.compile(copy.deepcopy(unit)),  # type: ignore[dict-item]
        "fused": FusedSEUnit.from_unit(copy.deepcopy(unit)),
    }


def forward_calls(forms: Mapping[str, nn.Module], y: Tensor, residual: Tensor) -> dict[str, Callable[[], Any]]:
    def call(module: nn.Module) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return module(y, residual)

        return run

    return {name: call(module) for name, module in forms.items()}


def train_calls(
    forms: Mapping[str, nn.Module], y: Tensor, residual: Tensor, seed: int = 0
) -> dict[str, Callable[[], Any]]:
    """Forward plus backward to the inputs and the unit's parameters (autograd.grad, so
    nothing accumulates between calls)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    grad = torch.randn(y.shape, generator=generator).to(device=y.device, dtype=y.dtype)
    y_leaf = y.detach().clone().requires_grad_(True)
    x_leaf = residual.detach().clone().requires_grad_(True)

    def call(module: nn.Module) -> Callable[[], Any]:
        params = list(module.parameters())

        def run() -> Any:
            with torch.enable_grad():
                out = module(y_leaf, x_leaf)
                return torch.autograd.grad(out, [y_leaf, x_leaf, *params], grad)

        return run

    return {name: call(module) for name, module in forms.items()}


def first_calls(calls: Mapping[str, Callable[[], Any]], sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Seconds of each form's first call (the compiled form compiles there)."""
    return {name: time_calls(fn, 1, sync=sync) for name, fn in calls.items()}


def page_faults_per_call(
    calls: Mapping[str, Callable[[], Any]], rounds: int = 5, sync: Callable[[], None] | None = None
) -> dict[str, float] | None:
    """Minor page faults per call of each form (whole process, every thread), counted in
    ``rounds`` interleaved rounds after the timing, so the count costs the timed calls
    nothing. A fresh 5.3 MB activation faults on about 1,300 4 KB pages, which on some
    machines costs more than the unit's arithmetic: the count says whether a form's time
    includes that. None where the platform has no ``getrusage``."""
    try:
        import resource
    except ImportError:
        return None
    totals = dict.fromkeys(calls, 0)
    for _ in range(rounds):
        for name, fn in calls.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            fn()
            if sync is not None:
                sync()
            totals[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {name: total / rounds for name, total in totals.items()}


def max_difference(forms: Mapping[str, nn.Module], y: Tensor, residual: Tensor) -> float:
    """Largest |fused - eager| over the outputs (a sanity check recorded with the timings)."""
    with torch.no_grad():
        eager = forms["eager"](y, residual).float()
        fused = forms["fused"](y, residual).float()
    return float((fused - eager).abs().max().item())


def summary(timings: Mapping[str, Statistics]) -> dict[str, float]:
    """Medians in µs, IQR/median, and the fused op's paired speedups."""
    out: dict[str, float] = {}
    for name in FORMS:
        stats = timings[name]
        out[f"{name}_us"] = stats.median * 1e6
        out[f"{name}_iqr_ratio"] = stats.iqr_ratio
    out["fused_vs_eager"] = paired_ratio(timings["eager"], timings["fused"]).median
    out["fused_vs_compiled"] = paired_ratio(timings["compiled"], timings["fused"]).median
    out["compiled_vs_eager"] = paired_ratio(timings["eager"], timings["compiled"]).median
    return out
