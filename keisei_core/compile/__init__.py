"""Validated compilation: composed strategies, equivalence checks against eager, fallback.

``compile_model(model, "channels-last+inductor")`` returns ``(model, CompileReport)``.
Composition parsing and the report types load without torch; the engine and the
helpers strategies use (``compile_in_place``, ``add_forward_wrapper``, artifact keys)
import torch on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from keisei_core.compile.composition import (
    Composition,
    CompositionError,
    build_composition,
    parse_composition,
    split_strategy,
)
from keisei_core.compile.report import (
    CompileFailedError,
    CompileReport,
    EquivalenceCheck,
    Failure,
    SpeedCheck,
    Tolerance,
    report_data,
    report_from_data,
)
from keisei_core.compile.tolerances import DEFAULT_TOLERANCES, resolve_tolerance

_LAZY: dict[str, str] = {
    "compile_model": "keisei_core.compile.engine",
    "resolve_strategy": "keisei_core.compile.engine",
    "DEFAULT_BATCH_SIZES": "keisei_core.compile.engine",
    "compile_in_place": "keisei_core.compile.inplace",
    "compiled_call": "keisei_core.compile.inplace",
    "CompiledCall": "keisei_core.compile.inplace",
    "add_forward_wrapper": "keisei_core.compile.wrapping",
    "forward_wrappers": "keisei_core.compile.wrapping",
    "artifact_key": "keisei_core.compile.artifacts",
    "artifact_path": "keisei_core.compile.artifacts",
    "build_atomically": "keisei_core.compile.artifacts",
    "weights_hash": "keisei_core.compile.artifacts",
}

__all__ = [
    "DEFAULT_TOLERANCES",
    "CompileFailedError",
    "CompileReport",
    "Composition",
    "CompositionError",
    "EquivalenceCheck",
    "Failure",
    "SpeedCheck",
    "Tolerance",
    "build_composition",
    "parse_composition",
    "report_data",
    "report_from_data",
    "resolve_tolerance",
    "split_strategy",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keisei_core.compile' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
