"""Typed options of Keisei's 2026 families. Importing this module never imports torch.

Field names follow Keisei 2026's ``[model.params]`` (``SEResNetParams``, ``ResNetParams``,
``MLPParams``, ``TransformerParams``) except its ``obs_channels``, which is keisei's
conventional ``input_channels`` here. The board (9 x 9) and the action spaces are those of
Keisei 2026 and are not options: they are declared by the model (:mod:`keisei_core.spaces`).
"""

from __future__ import annotations

from typing import Any

import attrs

_CHANNELS = [attrs.validators.ge(1), attrs.validators.le(4096)]


def _width(default: int) -> Any:
    return attrs.field(default=default, validator=[attrs.validators.ge(1), attrs.validators.le(8192)])


@attrs.frozen
class SEResNetOptions:
    """KataGo-style SE-ResNet (``se_resnet`` in Keisei 2026); defaults are its b40c256 preset."""

    input_channels: int = attrs.field(default=50, validator=_CHANNELS)
    num_blocks: int = attrs.field(default=40, validator=[attrs.validators.ge(1), attrs.validators.le(256)])
    channels: int = _width(256)
    se_reduction: int = _width(16)
    global_pool_channels: int = _width(128)
    policy_channels: int = _width(32)
    value_fc_size: int = _width(256)
    score_fc_size: int = _width(128)

    def __attrs_post_init__(self) -> None:
        if self.channels // self.se_reduction < 1:
            raise ValueError(
                f"channels ({self.channels}) // se_reduction ({self.se_reduction}) must be >= 1"
            )

    @property
    def se_hidden(self) -> int:
        return self.channels // self.se_reduction


@attrs.frozen
class ResNetOptions:
    """Plain ResNet (``resnet``): ``num_layers`` blocks of ``hidden_size`` channels."""

    input_channels: int = attrs.field(default=50, validator=_CHANNELS)
    hidden_size: int = _width(64)
    num_layers: int = attrs.field(default=4, validator=[attrs.validators.ge(0), attrs.validators.le(256)])


def _sizes(values: Any) -> tuple[int, ...]:
    return tuple(values)


def _positive_sizes(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
    if not value or any(not isinstance(s, int) or s < 1 or s > 65536 for s in value):
        raise ValueError(f"'{attribute.name}' must be a non-empty list of sizes in [1, 65536], got {list(value)}")


@attrs.frozen
class MLPOptions:
    """MLP (``mlp``): Linear -> LayerNorm -> ReLU per hidden size."""

    input_channels: int = attrs.field(default=50, validator=_CHANNELS)
    hidden_sizes: tuple[int, ...] = attrs.field(default=(512, 256), converter=_sizes, validator=_positive_sizes)


@attrs.frozen
class TransformerOptions:
    """Transformer (``transformer``): pre-norm encoder over the 81 squares, learned row and
    column embeddings, feed-forward width ``4 * d_model``, dropout 0.1 (PyTorch's default)."""

    input_channels: int = attrs.field(default=50, validator=_CHANNELS)
    d_model: int = _width(16)
    nhead: int = attrs.field(default=2, validator=[attrs.validators.ge(1), attrs.validators.le(256)])
    num_layers: int = attrs.field(default=2, validator=[attrs.validators.ge(1), attrs.validators.le(64)])

    def __attrs_post_init__(self) -> None:
        if self.d_model % self.nhead:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
