"""Built-in plugin: Keisei's simple baseline ``actor-critic``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from keisei_core.hookspecs import hookimpl
from keisei_core.specs import ModelSpec

if TYPE_CHECKING:
    from torch import nn


@attrs.frozen
class ActorCriticOptions:
    """Options of the baseline: conv 3x3 -> ReLU -> flatten -> linear policy and value heads."""

    input_channels: int = attrs.field(default=46, validator=attrs.validators.ge(1))
    num_actions: int = attrs.field(default=13527, validator=attrs.validators.ge(1))
    board_size: int = attrs.field(default=9, validator=[attrs.validators.ge(1), attrs.validators.le(64)])
    conv_channels: int = attrs.field(default=16, validator=attrs.validators.ge(1))


def build_actor_critic(options: ActorCriticOptions) -> nn.Module:
    from keisei_core.builtin.baseline_net import ActorCritic

    return ActorCritic(options)


@hookimpl
def keisei_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name="actor-critic",
            build=build_actor_critic,
            options=ActorCriticOptions,
            description="Keisei's baseline: one 3x3 conv (16 ch) and linear policy/value heads",
            family="actor-critic",
        )
    )
