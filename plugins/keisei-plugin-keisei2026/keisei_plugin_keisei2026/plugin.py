"""Entry point of ``keisei-plugin-keisei2026``: registers Keisei 2026's four families.

Importing this module never imports torch: the builders import the networks on first use.
Presets named after Keisei 2026's configs (``b10c128``: keisei-500k.toml, keisei-ddp.toml,
keisei-league.toml; ``b40c256``: keisei-katago.toml, keisei-h200.toml). Keisei 2026 ships no
preset for ``resnet``, ``mlp`` or ``transformer`` (their params are required there); the
sizes registered here are keisei's, chosen small enough for the contract suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.plugin import ModelSpec, hookimpl
from keisei_plugin_keisei2026.options import (
    MLPOptions,
    ResNetOptions,
    SEResNetOptions,
    TransformerOptions,
)

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.1"  # the keisei plugin API (keisei_core.plugin) this plugin is written for

UPSTREAM_COMMIT = "08747e10cde233d5c4e4244dbf01b8bfc5c19ccc"
"""The commit of tachyon-beep/keisei these networks and fixtures were checked against."""


def build_se_resnet(options: SEResNetOptions) -> nn.Module:
    from keisei_plugin_keisei2026.se_resnet import build_se_resnet as build

    return build(options)


def build_resnet(options: ResNetOptions) -> nn.Module:
    from keisei_plugin_keisei2026.scalar_nets import build_resnet as build

    return build(options)


def build_mlp(options: MLPOptions) -> nn.Module:
    from keisei_plugin_keisei2026.scalar_nets import build_mlp as build

    return build(options)


def build_transformer(options: TransformerOptions) -> nn.Module:
    from keisei_plugin_keisei2026.scalar_nets import build_transformer as build

    return build(options)


@attrs.frozen
class Family:
    architecture: str  # Keisei 2026's architecture tag (model_registry name)
    build: Callable[[Any], nn.Module]
    options: type


FAMILIES = {
    "se_resnet": Family("se_resnet", build_se_resnet, SEResNetOptions),
    "resnet": Family("resnet", build_resnet, ResNetOptions),
    "mlp": Family("mlp", build_mlp, MLPOptions),
    "transformer": Family("transformer", build_transformer, TransformerOptions),
}

B10C128 = {
    "num_blocks": 10, "channels": 128, "se_reduction": 8, "global_pool_channels": 64,
    "policy_channels": 16, "value_fc_size": 128, "score_fc_size": 64,
}
TINY_SE_RESNET = {
    "num_blocks": 2, "channels": 16, "se_reduction": 4, "global_pool_channels": 8,
    "policy_channels": 4, "value_fc_size": 16, "score_fc_size": 8,
}

# (name, family, option defaults, description)
PRESETS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("keisei2026-se-resnet-b40c256", "se_resnet", {},
     "Keisei 2026 SE-ResNet b40c256 (40 blocks x 256, global-pooling bias + SE-FiLM, W/D/L + score heads)"),
    ("keisei2026-se-resnet-b10c128", "se_resnet", B10C128,
     "Keisei 2026 SE-ResNet b10c128 (10 blocks x 128, ~7.5M params), its 500k/league preset"),
    ("keisei2026-se-resnet-tiny", "se_resnet", TINY_SE_RESNET,
     "Keisei 2026 SE-ResNet at 2 blocks x 16 for tests and fixtures"),
    ("keisei2026-resnet", "resnet", {}, "Keisei 2026 plain ResNet (4 blocks x 64 here), scalar tanh value"),
    ("keisei2026-mlp", "mlp", {}, "Keisei 2026 MLP with LayerNorm (512, 256 here), scalar tanh value"),
    ("keisei2026-transformer", "transformer", {},
     "Keisei 2026 pre-norm transformer over the 81 squares (d_model 16, 2 heads, 2 layers here)"),
)


def model_specs() -> list[ModelSpec]:
    specs = []
    for name, family_name, defaults, description in PRESETS:
        family = FAMILIES[family_name]
        specs.append(ModelSpec(
            name=name,
            build=family.build,
            options=family.options,
            description=description,
            defaults=defaults,
            family=f"keisei2026-{family_name.replace('_', '-')}",
            checkpoint_architectures={family.architecture},
        ))
    return specs


@hookimpl
def keisei_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in model_specs():
        register(spec)
