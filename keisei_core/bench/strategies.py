"""Applying a cell's strategy to its eager model, through ``keisei_core.compile``.

``keisei_core.compile.compile_model`` owns composition (``channels-last+inductor``),
validation against eager and the compile report. This adapter gives the engine one call
that returns ``(model, CompileReport)``, turns "this strategy cannot run this cell"
(device, dtype, training) into :class:`StrategyUnsupported` (cells ``skipped``) and a
compile that raises or disagrees with eager into :class:`StrategyFailed` (cells
``failed``, with the report). It never falls back to eager silently.

A strategy name is parsed into its :class:`~keisei_core.compile.Composition` once, when
the engine validates the config (:func:`check_composition`); support is then asked of
that composition (:meth:`Composition.unsupported`, the words ``compile_model`` uses).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keisei_core.compile.composition import AUTO, Composition
from keisei_core.compile.report import CompileReport, Failure
from keisei_core.statuses import CompileStatus, FailureKind

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.plugins import PluginHost

Strategy = str | Composition
"""A strategy as the bench holds it: its parsed composition, or a name (``"auto"``, or
one parsed on first use)."""


class StrategyUnsupported(Exception):
    """The strategy does not support the cell's device, dtype or training mode;
    ``failure`` says which as data (kind ``unsupported-*``)."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class StrategyFailed(Exception):
    """The strategy raised or its result differs from eager; ``report`` says how."""

    def __init__(self, message: str, report: CompileReport | None) -> None:
        super().__init__(message)
        self.report = report


def is_baseline(host: PluginHost, name: str | Composition) -> bool:
    """Whether ``name`` is the registered baseline strategy (``StrategySpec.baseline``)."""
    if isinstance(name, Composition):
        return len(name.parts) == 1 and name.parts[0].baseline
    return name in host.strategies and host.strategies.get(name).baseline


def check_composition(host: PluginHost, name: str) -> Composition | None:
    """``name`` parsed into its composition (None for ``auto``, which composes itself);
    a name that breaks the composition rules (e.g. two compilers) or names an unknown
    strategy is the compile layer's one-line error, so a bad matrix fails before it starts."""
    if name.strip() == AUTO:
        return None
    from keisei_core.compile import parse_composition

    return parse_composition(name, host.strategies)


def _composition(host: PluginHost, strategy: Strategy) -> Composition | None:
    return strategy if isinstance(strategy, Composition) else check_composition(host, strategy)


def check_support(
    host: PluginHost, strategy: Strategy, *, device: str, dtype: str, training: bool
) -> Composition | None:
    """The composition of ``strategy`` (None for ``auto``); raises StrategyUnsupported
    with the composition's reason when it cannot run on ``device``/``dtype`` (or train)."""
    composition = _composition(host, strategy)
    if composition is None:
        if training:
            raise StrategyUnsupported(
                "strategy 'auto' tunes acting (inference); training cells run eager",
                Failure(FailureKind.UNSUPPORTED_MODE, check="training", strategy=AUTO, mode="train"),
            )
        return None
    unsupported = composition.unsupported(device, dtype, training=training)
    if unsupported is not None:
        raise StrategyUnsupported(*unsupported)
    return composition


def apply_strategy(
    host: PluginHost,
    strategy: Strategy,
    eager: nn.Module,
    *,
    device: str,
    dtype: str,
    batch_sizes: Sequence[int],
    training: bool,
    example_obs: torch.Tensor,
) -> tuple[nn.Module, CompileReport | None]:
    """Return ``(model, report)`` for ``strategy`` applied to a private copy of ``eager``
    (report None for the baseline, which is not compiled)."""
    composition = check_support(host, strategy, device=device, dtype=dtype, training=training)
    if composition is not None and is_baseline(host, composition):
        # The baseline itself: nothing to validate; a copy keeps eager_model's weights
        # untouched when a training probe steps the optimizer.
        return copy.deepcopy(eager), None
    from keisei_core.compile import CompileFailedError, compile_model

    # fallback=False: a benchmark must never time eager under a compiled strategy's name.
    try:
        model, report = compile_model(
            eager,
            composition if composition is not None else AUTO,
            device=device,
            dtype=dtype,
            batch_sizes=tuple(batch_sizes),
            training=training,
            example_obs=example_obs,
            host=host,
            fallback=False,
        )
    except CompileFailedError as exc:
        raise StrategyFailed(str(exc), exc.report) from None
    if report.status == CompileStatus.SKIPPED:
        raise StrategyUnsupported(report.reason or f"strategy '{report.strategy}' skipped", report.failure)
    return model, report
