"""Typed options of the ResTower family. Importing this module never imports torch."""

from __future__ import annotations

import math
from typing import Any

import attrs

# Which unit each residual block carries (see keisei_plugin_restower.blocks for the math).
SE_KINDS: tuple[str, ...] = ("se", "film", "gpool")


def _finite(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number: {value}")


@attrs.frozen
class ResTowerOptions:
    """Options of Keisei's ActorCriticResTower and its variants.

    ``depth`` residual blocks of ``width`` channels on a ``board_size`` x ``board_size``
    board. ``se_ratio`` sets the SE bottleneck (``hidden = max(1, int(width * se_ratio))``);
    0 means no unit at all (the block is ``relu(bn2(conv2(...)) + x)``), for every
    ``se_kind``. ``se_kind`` picks the unit: ``se`` (Keisei's sigmoid-scale SE), ``film``
    (SE with scale and shift) or ``gpool`` (KataGo-style global-pooling bias block, whose
    single FC layer has no bottleneck, so for it only ``se_ratio == 0`` vs ``> 0`` matters).
    """

    input_channels: int = attrs.field(default=46, validator=[attrs.validators.ge(1), attrs.validators.le(4096)])
    num_actions: int = attrs.field(default=13527, validator=[attrs.validators.ge(1), attrs.validators.le(10_000_000)])
    board_size: int = attrs.field(default=9, validator=[attrs.validators.ge(1), attrs.validators.le(64)])
    depth: int = attrs.field(default=9, validator=[attrs.validators.ge(0), attrs.validators.le(256)])
    width: int = attrs.field(default=256, validator=[attrs.validators.ge(1), attrs.validators.le(4096)])
    se_ratio: float = attrs.field(
        default=0.25, validator=[_finite, attrs.validators.ge(0.0), attrs.validators.le(4.0)]
    )
    se_kind: str = attrs.field(default="se", validator=attrs.validators.in_(SE_KINDS))

    @property
    def has_unit(self) -> bool:
        """Whether each block carries an SE / global-pooling unit (``se_ratio > 0``)."""
        return self.se_ratio > 0
