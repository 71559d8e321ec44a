"""The keisei plugin: registers the three research families and their small presets.

This module is what the entry point names; it imports neither torch nor the network
code, so listing plugins stays light. Builders import their network module on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keisei_core.plugin import ModelSpec, hookimpl
from keisei_plugin_research.options import (
    CellLatticeOptions,
    ExpertsWithGhostsOptions,
    SquareTransformerOptions,
)

if TYPE_CHECKING:
    from torch import nn

KEISEI_PLUGIN_API = "1.0"  # the keisei plugin API (keisei_core.plugin) this plugin is written for


def build_cell_lattice(options: CellLatticeOptions) -> nn.Module:
    from keisei_plugin_research.lattice import CellLattice

    return CellLattice(options)


def build_experts_with_ghosts(options: ExpertsWithGhostsOptions) -> nn.Module:
    from keisei_plugin_research.experts import ExpertsWithGhosts

    return ExpertsWithGhosts(options)


def build_square_transformer(options: SquareTransformerOptions) -> nn.Module:
    from keisei_plugin_research.square_transformer import SquareTransformer

    return SquareTransformer(options)


# Small presets keep contract tests and CI fast; they keep the real observation and
# action shapes (46 x 9 x 9 -> 13,527), so only the trunk shrinks.
TINY_LATTICE: dict[str, Any] = {"depth": 2, "cell_width": 8, "steps": 2, "value_hidden": 16}
TINY_TRANSFORMER: dict[str, Any] = {"width": 32, "depth": 2, "heads": 2, "mlp_ratio": 2, "value_hidden": 16}
TINY_EXPERTS: dict[str, Any] = {
    "width": 32,
    "depth": 2,
    "heads": 2,
    "experts": 4,
    "ghosts": 2,
    "expert_hidden": 32,
    "attention_radius": 2,
    "value_hidden": 16,
}


@hookimpl
def keisei_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name="cell-lattice",
            build=build_cell_lattice,
            options=CellLatticeOptions,
            description="depth x 9 x 9 lattice of gMLP cells exchanging with neighbours over propagation steps",
            family="cell-lattice",
        )
    )
    register(
        ModelSpec(
            name="cell-lattice-tiny",
            build=build_cell_lattice,
            options=CellLatticeOptions,
            description="cell-lattice preset for tests: 2 layers of 8-wide cells, 2 steps",
            defaults=TINY_LATTICE,
            family="cell-lattice",
        )
    )
    register(
        ModelSpec(
            name="experts-with-ghosts",
            build=build_experts_with_ghosts,
            options=ExpertsWithGhostsOptions,
            description="square-token transformer with mixture-of-experts layers and ghost experts for overflow",
            family="experts-with-ghosts",
        )
    )
    register(
        ModelSpec(
            name="experts-with-ghosts-tiny",
            build=build_experts_with_ghosts,
            options=ExpertsWithGhostsOptions,
            description="experts-with-ghosts preset for tests: width 32, 2 layers, local attention",
            defaults=TINY_EXPERTS,
            family="experts-with-ghosts",
        )
    )
    register(
        ModelSpec(
            name="square-transformer",
            build=build_square_transformer,
            options=SquareTransformerOptions,
            description="transformer over the 81 square tokens with learned positions and a value token",
            family="square-transformer",
        )
    )
    register(
        ModelSpec(
            name="square-transformer-tiny",
            build=build_square_transformer,
            options=SquareTransformerOptions,
            description="square-transformer preset for tests: width 32, 2 layers",
            defaults=TINY_TRANSFORMER,
            family="square-transformer",
        )
    )
