"""Building registered models from typed options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keisei_core.config.converter import structure, unstructure
from keisei_core.specs import ModelSpec

if TYPE_CHECKING:
    from torch import nn


def resolve_options(
    spec: ModelSpec, overrides: Mapping[str, Any] | None = None, *, where: str | None = None
) -> Any:
    """The model's typed options: its class defaults, then the preset's, then ``overrides``."""
    data = {**spec.defaults, **dict(overrides or {})}
    return structure(data, spec.options, where or f"model '{spec.name}' options")


def options_as_dict(options: Any) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(options)
    return data


def build_from_spec(spec: ModelSpec, options: Any) -> nn.Module:
    model = spec.build(options)
    # The rebuild recipe travels with the module (checkpoints and reports read it).
    model.keisei_model_name = spec.name  # type: ignore[assignment]
    model.keisei_model_options = options_as_dict(options)  # type: ignore[assignment]
    # Which foreign checkpoints' architecture tags it takes (load_weights checks them).
    model.keisei_checkpoint_architectures = tuple(sorted(spec.checkpoint_architectures))  # type: ignore[assignment]
    return model
