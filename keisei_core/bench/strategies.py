"""Applying a cell's strategy to its eager model, through ``keisei_core.compile``.

``keisei_core.compile.compile_model`` owns composition (``channels-last+inductor``),
validation against eager and the compile report. This adapter gives the engine one call
that returns ``(model, report as a JSON dict)``, turns "this strategy cannot run this
cell" (device, dtype, training) into :class:`StrategyUnsupported` (cells ``skipped``) and
a compile that raises or disagrees with eager into :class:`StrategyFailed` (cells
``failed``, with the report). It never falls back to eager silently.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.json_data import json_safe
from keisei_core.specs import StrategySpec

AUTO = "auto"  # compile_model's tuner (keisei_core.compile.auto), not a registered strategy

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.plugins import PluginHost


class StrategyUnsupported(Exception):
    """The strategy does not support the cell's device, dtype or training mode."""


class StrategyFailed(Exception):
    """The strategy raised or its result differs from eager; ``report`` says how."""

    def __init__(self, message: str, report: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.report = report


def strategy_parts(name: str) -> list[str]:
    return [part.strip() for part in name.split("+") if part.strip()]


def is_baseline(host: PluginHost, name: str) -> bool:
    """Whether ``name`` is the registered baseline strategy (``StrategySpec.baseline``)."""
    return name in host.strategies and host.strategies.get(name).baseline


def check_support(host: PluginHost, name: str, *, device: str, dtype: str, training: bool) -> list[StrategySpec]:
    """The specs of a (possibly composed) strategy; raises StrategyUnsupported with a reason."""
    if name.strip() == AUTO:
        if training:
            raise StrategyUnsupported("strategy 'auto' tunes acting (inference); training cells run eager")
        return []
    specs = [host.strategies.get(part) for part in strategy_parts(name)]
    for spec in specs:
        if device not in spec.devices:
            raise StrategyUnsupported(f"strategy '{spec.name}' does not run on {device} (only {sorted(spec.devices)})")
        if dtype not in spec.dtypes:
            raise StrategyUnsupported(f"strategy '{spec.name}' does not support {dtype} (only {sorted(spec.dtypes)})")
        if training and not spec.training:
            raise StrategyUnsupported(f"strategy '{spec.name}' does not support training")
    return specs


def check_composition(host: PluginHost, name: str) -> None:
    """Raise the compile layer's one-line CompositionError for a name that breaks the
    composition rules (e.g. two compilers), so a bad matrix fails before it starts."""
    if name.strip() == AUTO:
        return
    from keisei_core.compile import parse_composition

    parse_composition(name, host.strategies)


def report_to_dict(report: Any) -> dict[str, Any] | None:
    """A compile report as JSON-ready data (attrs classes, dicts, or objects with to_dict)."""
    if report is None:
        return None
    if hasattr(report, "to_dict"):
        data = report.to_dict()
    elif attrs.has(type(report)):
        from keisei_core.config.converter import unstructure

        data = unstructure(report)
    elif isinstance(report, dict):
        data = dict(report)
    else:
        data = {"report": str(report)}
    return json_safe(data)  # type: ignore[no-any-return]


def apply_strategy(
    host: PluginHost,
    name: str,
    eager: nn.Module,
    *,
    device: str,
    dtype: str,
    batch_sizes: Sequence[int],
    training: bool,
    example_obs: torch.Tensor,
) -> tuple[nn.Module, dict[str, Any] | None]:
    """Return ``(model, report)`` for ``name`` applied to a private copy of ``eager``."""
    check_support(host, name, device=device, dtype=dtype, training=training)
    if is_baseline(host, name):
        # The baseline itself: nothing to validate; a copy keeps eager_model's weights
        # untouched when a training probe steps the optimizer.
        return copy.deepcopy(eager), None
    from keisei_core.compile import CompileFailedError, compile_model

    # fallback=False: a benchmark must never time eager under a compiled strategy's name.
    try:
        model, report = compile_model(
            eager,
            name,
            device=device,
            dtype=dtype,
            batch_sizes=tuple(batch_sizes),
            training=training,
            example_obs=example_obs,
            host=host,
            fallback=False,
        )
    except CompileFailedError as exc:
        raise StrategyFailed(str(exc), report_to_dict(exc.report)) from None
    data = report_to_dict(report)
    if getattr(report, "status", None) == "skipped":
        raise StrategyUnsupported(str(getattr(report, "reason", None) or f"strategy '{name}' skipped"))
    return model, data
