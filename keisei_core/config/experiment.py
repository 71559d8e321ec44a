"""The typed experiment config: what ``keisei bench`` runs, read from TOML + ``--set``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from keisei_core.config.converter import structure, unstructure
from keisei_core.config.files import read_toml
from keisei_core.config.overrides import apply_overrides


def _non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: Sequence[Any]) -> None:
    if len(value) == 0:
        raise ValueError(f"'{attribute.name}' must not be empty: {list(value)!r}")


def _all_positive(_instance: Any, attribute: attrs.Attribute[Any], value: Sequence[int]) -> None:
    _non_empty(_instance, attribute, value)
    bad = [v for v in value if v < 1]
    if bad:
        raise ValueError(f"'{attribute.name}' must hold integers >= 1: {bad!r}")


def _unique(_instance: Any, attribute: attrs.Attribute[Any], value: Sequence[Any]) -> None:
    seen = [v for i, v in enumerate(value) if v in value[:i]]
    if seen:
        raise ValueError(f"'{attribute.name}' must not repeat entries: {seen!r}")


@attrs.frozen
class ModelEntry:
    """One model of the matrix: a registered name, its options, an optional label."""

    name: str
    options: dict[str, Any] = attrs.field(factory=dict)
    label: str | None = None

    @property
    def display_name(self) -> str:
        return self.label or self.name


@attrs.frozen
class BenchSettings:
    """How long and how carefully each cell is measured."""

    warmup_seconds: float = attrs.field(default=0.5, validator=attrs.validators.ge(0.0))
    min_samples: int = attrs.field(default=5, validator=attrs.validators.ge(3))
    max_samples: int = attrs.field(default=200, validator=attrs.validators.ge(3))
    time_budget_seconds: float = attrs.field(default=5.0, validator=attrs.validators.gt(0.0))
    target_iqr_ratio: float = attrs.field(default=0.05, validator=attrs.validators.gt(0.0))
    threads: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )


@attrs.frozen
class WandbSettings:
    """Weights & Biases tracking; offline by default so no account is needed."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "keisei"
    entity: str | None = None
    group: str | None = None
    # Log a keisei checkpoint artifact per (model, strategy), with the recipe and compile
    # report as metadata.
    log_checkpoints: bool = False


@attrs.frozen
class ExperimentConfig:
    """A benchmark matrix: models x strategies x batch sizes x probes on one device."""

    name: str = "experiment"
    description: str = ""
    plugins: list[str] = attrs.field(factory=list)
    models: list[ModelEntry] = attrs.field(
        factory=lambda: [ModelEntry("actor-critic")], validator=_non_empty
    )
    strategies: list[str] = attrs.field(factory=lambda: ["eager"], validator=[_non_empty, _unique])
    probes: list[str] = attrs.field(factory=lambda: ["latency"], validator=[_non_empty, _unique])
    batch_sizes: list[int] = attrs.field(factory=lambda: [1, 64], validator=[_all_positive, _unique])
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = 0
    output_dir: str = "results"
    bench: BenchSettings = attrs.field(factory=BenchSettings)
    wandb: WandbSettings = attrs.field(factory=WandbSettings)
    # Per-probe settings, ``[probe_options.<probe name>]``: each probe reads and validates
    # its own table (e.g. ``world_size`` of ``train-step-ddp``); keys must name probes.
    probe_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)


def load_experiment(
    path: str | Path | None, overrides: Sequence[str] = (), *, label: str | None = None
) -> ExperimentConfig:
    """Read a TOML file (or start from defaults when ``path`` is None), apply ``--set``
    overrides, and type the result. Relative plugin paths are taken from the file's folder."""
    where = label or (str(path) if path is not None else "config")
    data: dict[str, Any] = read_toml(path, where) if path is not None else {}
    apply_overrides(data, overrides)
    config = structure(data, ExperimentConfig, where)
    if path is not None:
        base = Path(path).resolve().parent
        plugins = [
            str(base / p) if p.endswith(".py") and not Path(p).is_absolute() else p
            for p in config.plugins
        ]
        config = attrs.evolve(config, plugins=plugins)
    return config


def experiment_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(config)
    return data
