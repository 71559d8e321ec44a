"""``channels-last+bf16+inductor``: parsing a composed strategy into specs, and what it supports.

Rules: parts are registered strategy names joined by ``+``; any number of
``kind="transform"`` parts, then at most one ``kind="compiler"`` part, which must be
last. A composition supports the devices and dtypes every part supports, trains only
when every part trains, and computes in the lowest precision any part declares.
No torch here: configs and listings check compositions without importing it.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from keisei_core.compile.report import Failure
from keisei_core.errors import KeiseiError, UnknownNameError
from keisei_core.registry import Registry
from keisei_core.specs import DEVICES, DTYPES, StrategySpec
from keisei_core.statuses import FailureKind
from keisei_core.suggest import unknown_name_message

AUTO = "auto"


class CompositionError(KeiseiError, ValueError):
    """A composed strategy name that breaks the composition rules."""


@attrs.frozen
class Composition:
    """An ordered tuple of strategy specs applied one after the other."""

    parts: tuple[StrategySpec, ...] = attrs.field(converter=tuple)

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.parts)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    @property
    def devices(self) -> frozenset[str]:
        return frozenset.intersection(frozenset(DEVICES), *(p.devices for p in self.parts))

    @property
    def dtypes(self) -> frozenset[str]:
        return frozenset.intersection(frozenset(DTYPES), *(p.dtypes for p in self.parts))

    @property
    def training(self) -> bool:
        return all(p.training for p in self.parts)

    @property
    def frozen_weights(self) -> bool:
        """A part holds its own copy of the weights (see ``StrategySpec.frozen_weights``)."""
        return any(p.frozen_weights for p in self.parts)

    @property
    def precision(self) -> str | None:
        """The reduced precision a part computes in (None: the model's own dtype)."""
        found = {p.precision for p in self.parts if p.precision is not None}
        return next(iter(found)) if found else None

    def unsupported(self, device: str, dtype: str, *, training: bool = False) -> tuple[str, Failure] | None:
        """Why this composition cannot run on ``device`` with a ``dtype`` model, in words
        and as a :class:`~keisei_core.compile.report.Failure` (None if it can). The one
        support check: ``compile_model``, the bench engine and ``auto`` all ask it."""
        for part in self.parts:
            if device not in part.devices:
                return (f"strategy '{part.name}' runs on {_words(part.devices)} only, not {device}",
                        Failure(FailureKind.UNSUPPORTED_DEVICE, check="device", strategy=part.name))
            if dtype not in part.dtypes:
                return (f"strategy '{part.name}' supports {_words(part.dtypes)} models only, not {dtype}",
                        Failure(FailureKind.UNSUPPORTED_DTYPE, check="dtype", strategy=part.name))
            if training and not part.training:
                return (f"strategy '{part.name}' does not support training (inference only)",
                        Failure(FailureKind.UNSUPPORTED_MODE, check="training", strategy=part.name, mode="train"))
        return None

    def unsupported_reason(self, device: str, dtype: str, *, training: bool = False) -> str | None:
        """The words of :meth:`unsupported` (None if the composition can run)."""
        found = self.unsupported(device, dtype, training=training)
        return found[0] if found else None


def _words(values: frozenset[str]) -> str:
    return "/".join(sorted(values))


def split_strategy(name: str) -> list[str]:
    """``"a + b+c"`` -> ``["a", "b", "c"]``; empty parts are an error."""
    if not isinstance(name, str) or not name.strip():
        raise CompositionError(f"strategy must be a non-empty name, got {name!r}")
    parts = [part.strip() for part in name.split("+")]
    if any(not part for part in parts):
        raise CompositionError(f"strategy '{name}' has an empty part (two '+' in a row or a '+' at an end)")
    return parts


def parse_composition(name: str, strategies: Registry[StrategySpec]) -> Composition:
    """The specs of ``name`` from the registry, checked against the composition rules."""
    parts = split_strategy(name)
    specs: list[StrategySpec] = []
    for part in parts:
        if part not in strategies:
            message = unknown_name_message("strategy", part, strategies.names())
            if len(parts) > 1:
                message = f"in '{name}': {message}"
            raise UnknownNameError(message)
        specs.append(strategies.get(part))
    return build_composition(specs, label=name)


def build_composition(specs: Sequence[StrategySpec], *, label: str | None = None) -> Composition:
    """Check ``specs`` against the composition rules and return them as a Composition."""
    label = label or "+".join(s.name for s in specs)
    if not specs:
        raise CompositionError("a composition needs at least one strategy")
    if len(specs) > 1 and any(s.name == AUTO for s in specs):
        raise CompositionError(
            f"strategy '{label}': 'auto' chooses whole compositions itself and cannot be composed"
        )
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise CompositionError(f"strategy '{label}' names '{spec.name}' twice")
        seen.add(spec.name)
    compilers = [s.name for s in specs if s.kind == "compiler"]
    if len(compilers) > 1:
        raise CompositionError(
            f"strategy '{label}' has {len(compilers)} compilers ({', '.join(compilers)}); "
            "at most one, last (e.g. channels-last+bf16+inductor)"
        )
    if compilers and specs[-1].kind != "compiler":
        raise CompositionError(
            f"strategy '{label}': compiler '{compilers[0]}' must come last "
            f"(transforms first, e.g. {'+'.join([*(s.name for s in specs if s.kind != 'compiler'), compilers[0]])})"
        )
    precisions = sorted({s.precision for s in specs if s.precision is not None})
    if len(precisions) > 1:
        raise CompositionError(
            f"strategy '{label}' mixes precisions {', '.join(precisions)}; pick one"
        )
    return Composition(tuple(specs))  # type: ignore[arg-type]
