"""The typed experiment config: what ``keisei bench`` runs, read from TOML + ``--set``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from keisei_core.config.converter import structure, unstructure
from keisei_core.config.files import read_toml
from keisei_core.config.overrides import apply_overrides

# Upper bounds: far beyond any real setting, low enough that nothing downstream overflows
# (torch.set_num_threads takes a C int, seeds a 64-bit integer, JSON finite numbers).
MAX_SECONDS = 86_400.0
MAX_SAMPLES = 10_000_000
MAX_THREADS = 4096
MAX_BATCH_SIZE = 1 << 20
MAX_SEED = (1 << 62) - 1
# A run name becomes a folder name under output_dir: one plain path component.
# No separators, no control characters, no Windows-reserved characters, not hidden,
# not an option-like leading '-', no trailing dot or space.
RUN_NAME = re.compile(r'^(?![.\- ])[^/\\:*?"<>|\x00-\x1f\x7f-\x9f]{1,128}(?<![. ])$')


def _finite_between(low: float, high: float, *, low_inclusive: bool = True) -> Callable[[Any, attrs.Attribute[Any], float], None]:
    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
        above = value >= low if low_inclusive else value > low
        if not (math.isfinite(value) and above and value <= high):
            bound = ">=" if low_inclusive else ">"
            raise ValueError(f"'{attribute.name}' must be a finite number {bound} {low:g} and <= {high:g}: {value!r}")

    return validator


def _int_between(low: int, high: int) -> Callable[[Any, attrs.Attribute[Any], int | None], None]:
    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and value < low:
            raise ValueError(f"'{attribute.name}' must be >= {low}: {value!r}")
        if value is not None and value > high:
            raise ValueError(f"'{attribute.name}' must be <= {high}: {value!r}")

    return validator


def _at_least_min_samples(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < instance.min_samples:
        raise ValueError(f"'{attribute.name}' must be >= min_samples ({instance.min_samples}): {value!r}")


def _run_name(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not RUN_NAME.match(value) or value in (".", ".."):
        raise ValueError(
            f"'{attribute.name}' must be a plain folder name (no '/', '\\', control characters or "
            f"':*?\"<>|', not starting with '.', '-' or a space, at most 128 characters), since the run "
            f"folder is <output_dir>/<name>-<time>: {value!r}"
        )


def _non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: Sequence[Any]) -> None:
    if len(value) == 0:
        raise ValueError(f"'{attribute.name}' must not be empty: {list(value)!r}")


def _all_positive(_instance: Any, attribute: attrs.Attribute[Any], value: Sequence[int]) -> None:
    _non_empty(_instance, attribute, value)
    small = [v for v in value if v < 1]
    if small:
        raise ValueError(f"'{attribute.name}' must hold integers >= 1: {small!r}")
    large = [v for v in value if v > MAX_BATCH_SIZE]
    if large:
        raise ValueError(f"'{attribute.name}' must hold integers <= {MAX_BATCH_SIZE}: {large!r}")


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

    warmup_seconds: float = attrs.field(default=0.5, validator=_finite_between(0.0, MAX_SECONDS))
    min_samples: int = attrs.field(default=5, validator=_int_between(3, MAX_SAMPLES))
    max_samples: int = attrs.field(default=200, validator=[_int_between(3, MAX_SAMPLES), _at_least_min_samples])
    time_budget_seconds: float = attrs.field(
        default=5.0, validator=_finite_between(0.0, MAX_SECONDS, low_inclusive=False)
    )
    target_iqr_ratio: float = attrs.field(default=0.05, validator=_finite_between(0.0, 100.0, low_inclusive=False))
    threads: int | None = attrs.field(default=None, validator=_int_between(1, MAX_THREADS))
    # Where the cells run (keisei_core.bench.executors): in this process, or each
    # (model, strategy, mode) group in a fresh child process, so a crash or an
    # out-of-memory kill of one group is recorded on its cells and the run goes on.
    executor: Literal["in-process", "child-process"] = "in-process"
    # The child-process executor's bound on one group (its build, compile and cells).
    child_timeout_seconds: float = attrs.field(
        default=3600.0, validator=_finite_between(0.0, MAX_SECONDS, low_inclusive=False)
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

    name: str = attrs.field(default="experiment", validator=_run_name)
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
    seed: int = attrs.field(default=0, validator=_int_between(0, MAX_SEED))
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
