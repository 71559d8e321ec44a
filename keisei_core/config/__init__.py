"""Typed TOML configs: attrs classes structured by one strict cattrs converter."""

from keisei_core.config.converter import converter, structure, unstructure
from keisei_core.config.experiment import (
    BenchSettings,
    ExperimentConfig,
    ModelEntry,
    WandbSettings,
    experiment_to_dict,
    load_experiment,
)
from keisei_core.config.files import dump_toml, read_toml
from keisei_core.config.overrides import apply_overrides, parse_override

__all__ = [
    "BenchSettings",
    "ExperimentConfig",
    "ModelEntry",
    "WandbSettings",
    "apply_overrides",
    "converter",
    "dump_toml",
    "experiment_to_dict",
    "load_experiment",
    "parse_override",
    "read_toml",
    "structure",
    "unstructure",
]
