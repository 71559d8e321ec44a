"""Applying a cell's strategy to its eager model, through ``keisei_core.compile``.

``keisei_core.compile.compile_model`` owns composition (``channels-last+inductor``),
validation against eager and the compile report. This adapter gives the engine one call
that returns ``(model, report as a JSON dict)``, turns "this strategy cannot run this
cell" (device, dtype, training) into :class:`StrategyUnsupported` (cells ``skipped``) and
a compile that raises or disagrees with eager into :class:`StrategyFailed` (cells
``failed``, with the report). It never falls back to eager silently. Without
``keisei_core.compile`` (a stripped-down install) the parts are applied in order.
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.specs import StrategyContext, StrategySpec

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
    module = _compile_module()
    if module is not None and hasattr(module, "parse_composition"):
        module.parse_composition(name, host.strategies)


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
    return _jsonable(data)  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


def _compile_module() -> Any | None:
    try:
        return importlib.import_module("keisei_core.compile")
    except ModuleNotFoundError as exc:
        if exc.name in ("keisei_core.compile",):
            return None
        raise


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
    if name == "eager":
        # The baseline itself: nothing to validate; a copy keeps eager_model's weights
        # untouched when a training probe steps the optimizer.
        return copy.deepcopy(eager), None
    module = _compile_module()
    if module is not None and hasattr(module, "compile_model"):
        # fallback=False: a benchmark must never time eager under a compiled strategy's name.
        try:
            model, report = module.compile_model(
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
        except module.CompileFailedError as exc:
            raise StrategyFailed(str(exc), report_to_dict(exc.report)) from None
        data = report_to_dict(report)
        if getattr(report, "status", None) == "skipped":
            raise StrategyUnsupported(str(getattr(report, "reason", None) or f"strategy '{name}' skipped"))
        return model, data
    return _apply_in_order(host, name, eager, device=device, dtype=dtype, batch_sizes=batch_sizes,
                           training=training, example_obs=example_obs)


def _apply_in_order(
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
    # Used only while keisei_core.compile is absent: each part's apply on a private copy.
    context = StrategyContext(
        device=device,
        dtype=dtype,
        example_obs=example_obs,
        batch_sizes=tuple(batch_sizes),
        training=training,
        model_name=getattr(eager, "keisei_model_name", None),
        model_options=getattr(eager, "keisei_model_options", None),
    )
    start = time.perf_counter()
    model = copy.deepcopy(eager)
    for spec in check_support(host, name, device=device, dtype=dtype, training=training):
        model = spec.apply(model, context)
    return model, {
        "strategy": name,
        "apply_seconds": time.perf_counter() - start,
        "notes": _jsonable(context.notes),
    }
