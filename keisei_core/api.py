"""The Python API for researchers: list and build registered components."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keisei_core.models import build_from_spec, resolve_options
from keisei_core.plugins import get_host
from keisei_core.registry import Registration
from keisei_core.specs import ModelSpec, ProbeSpec, StrategySpec

if TYPE_CHECKING:
    from torch import nn


def list_models(pattern: str | None = None) -> list[Registration[ModelSpec]]:
    """Registered models whose names match a shell-style pattern (all when None)."""
    return get_host().models.match(pattern)


def list_strategies(pattern: str | None = None) -> list[Registration[StrategySpec]]:
    return get_host().strategies.match(pattern)


def list_probes(pattern: str | None = None) -> list[Registration[ProbeSpec]]:
    return get_host().probes.match(pattern)


def get_model_spec(name: str) -> ModelSpec:
    return get_host().models.get(name)


def build_model(name: str, **options: Any) -> nn.Module:
    """Build a registered model: ``build_model("restower", depth=3, width=64)``."""
    spec = get_host().models.get(name)
    return build_from_spec(spec, resolve_options(spec, options))
