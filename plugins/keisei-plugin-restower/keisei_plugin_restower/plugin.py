"""Entry point of ``keisei-plugin-restower``: registers the ResTower family.

Importing this module never imports torch: the builder imports the network on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.plugin import ModelSpec, hookimpl
from keisei_plugin_restower.options import ResTowerOptions

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.0"  # the keisei plugin API (keisei_core.plugin) this plugin is written for

FAMILY = "restower"


@attrs.frozen
class Preset:
    """A registered name: option defaults over :class:`ResTowerOptions` and what it is for."""

    name: str
    defaults: dict[str, Any]
    description: str


# Variants differ from `restower` in one thing only, so they compare cleanly with it.
PRESETS: tuple[Preset, ...] = (
    Preset("restower", {}, "Keisei's ActorCriticResTower: 9 blocks x 256, plain SE (ratio 0.25)"),
    Preset("restower-film", {"se_kind": "film"}, "restower with SE-FiLM (scale and shift) in every block"),
    Preset(
        "restower-gpool",
        {"se_kind": "gpool"},
        "restower with KataGo-style global-pooling bias blocks instead of SE",
    ),
    Preset("restower-no-se", {"se_ratio": 0.0}, "restower without SE units (se_ratio 0)"),
    Preset("restower-small", {"depth": 2, "width": 32}, "small restower (2 x 32, plain SE) for fast experiments and tests"),
    Preset("restower-deep", {"depth": 40}, "deep restower (40 x 256, plain SE), the size later Keisei trains"),
)


def build_restower(options: ResTowerOptions) -> nn.Module:
    from keisei_plugin_restower.network import build_restower as build

    return build(options)


def model_specs() -> list[ModelSpec]:
    return [
        ModelSpec(
            name=preset.name,
            build=build_restower,
            options=ResTowerOptions,
            description=preset.description,
            defaults=preset.defaults,
            family=FAMILY,
        )
        for preset in PRESETS
    ]


@hookimpl
def keisei_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in model_specs():
        register(spec)
