"""How expensive a model is to test, measured without allocating it.

The model is built on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic)
and one forward pass runs under torch's FlopCounterMode and an operator counter, so even
the 40 x 256 tower is sized in about a second. The contracts over every registered model
use this to decide whether a model is tested at its preset options or at shrunk ones
(:func:`contract_options`), and which model of a family a compiler is tried on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from torch.utils._python_dispatch import TorchDispatchMode

from keisei_core.models import build_from_spec, resolve_options
from keisei_core.specs import ModelSpec
from keisei_core.testing.options import shrunk_options

MAX_CONTRACT_FLOPS = 250_000_000
"""Forward FLOPs per sample up to which a model is contract-tested at its preset options.

A model contract makes on the order of 600 sample-forwards (hypothesis examples at batch
sizes up to 4, plus backward passes); at 250 MFLOP per sample that is at most ~150 GFLOP,
a few seconds on a 2-core CPU. The default ResTower (1.74 GFLOP per sample) would take
about a minute per model, and the 40-block tower four times that.
"""

MAX_CONTRACT_PARAMETERS = 60_000_000
"""Parameters up to which the preset is used (state_dict copies and gradients stay small)."""


@attrs.frozen
class ModelCost:
    """Parameters, forward FLOPs per sample and aten ops per forward (the size of the
    graph a compiler has to lower, which drives compile time more than FLOPs do).
    The last two are None when the forward cannot run on the meta device."""

    parameters: int
    flops_per_sample: int | None
    ops_per_forward: int | None = None


class _OpCounter(TorchDispatchMode):
    """Counts the aten operators a forward pass dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def measure_cost(spec: ModelSpec, overrides: Mapping[str, Any] | None = None) -> ModelCost:
    """Parameters and forward FLOPs per sample of ``spec`` built on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from keisei_core.introspect import model_shapes

    options = resolve_options(spec, overrides or {})
    with torch.device("meta"):
        model = build_from_spec(spec, options)
    parameters = sum(p.numel() for p in model.parameters())
    try:
        shapes = model_shapes(model)
        obs = torch.zeros((1, *shapes.observation), device="meta")
        counter = FlopCounterMode(display=False)
        ops = _OpCounter()
        with counter, ops, torch.no_grad():
            model.eval()(obs)
        return ModelCost(parameters, int(counter.get_total_flops()), ops.ops)
    except Exception:  # data-dependent code cannot run on meta; size by parameters only
        return ModelCost(parameters, None, None)


def is_cheap(cost: ModelCost) -> bool:
    if cost.parameters > MAX_CONTRACT_PARAMETERS:
        return False
    return cost.flops_per_sample is not None and cost.flops_per_sample <= MAX_CONTRACT_FLOPS


@attrs.frozen
class SizedOptions:
    """The options a contract runs a model at, and why (``preset`` or ``shrunk``)."""

    overrides: dict[str, Any]
    size: str
    cost: ModelCost


def contract_options(spec: ModelSpec, size: str = "auto") -> SizedOptions:
    """Options for a contract run of ``spec``.

    ``size="preset"``: the registered preset; ``"shrunk"``: :func:`shrunk_options`;
    ``"auto"``: the preset when it is cheap (:data:`MAX_CONTRACT_FLOPS`,
    :data:`MAX_CONTRACT_PARAMETERS`), else shrunk.
    """
    if size not in ("auto", "preset", "shrunk"):
        raise ValueError(f"size must be auto, preset or shrunk, got {size!r}")
    if size == "preset":
        return SizedOptions({}, "preset", measure_cost(spec))
    if size == "auto":
        cost = measure_cost(spec)
        if is_cheap(cost):
            return SizedOptions({}, "preset", cost)
    overrides = shrunk_options(spec)
    return SizedOptions(overrides, "shrunk", measure_cost(spec, overrides))
