"""The probe's settings, read from ``[probe_options.train-step-ddp]`` of a bench config.

Nothing here imports torch: options are checked when a cell starts, before any process is
spawned, and a bad value is one :class:`~keisei_core.errors.ConfigError` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from keisei_core.plugin import ConfigError, KeiseiError

PROBE_NAME = "train-step-ddp"
OPTIONS_WHERE = f"probe_options.{PROBE_NAME}"
DEFAULT_CPU_WORLD_SIZE = 2


class DistributedProbeError(KeiseiError):
    """A rank failed, died or hung; the message names the rank and what happened to it."""


def _positive_or_none(_instance: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"'{attribute.name}' must be >= 1: {value}")


@attrs.frozen
class DdpOptions:
    """What the user may set (every field optional).

    ``world_size``: processes (ranks); default 2 on CPU, every visible GPU on CUDA.
    ``backend``: ``auto`` is NCCL on CUDA and gloo on CPU.
    ``timeout_seconds``: the whole launch (start, compile, measure) must end within it; a
    rank that hangs is stopped then, and it is the process group's collective timeout too.
    ``threads_per_rank``: intra-op threads of each rank (and of the one-rank baseline);
    default on CPU: the run's threads divided among the ranks, so ranks do not fight
    over cores.
    ``baseline``: also time one rank alone (no DDP) for the scaling efficiency.
    ``find_unused_parameters`` and ``bucket_cap_mb`` are passed to DistributedDataParallel.
    ``start_method``: ``spawn`` starts each rank in a fresh interpreter (torch imported
    anew per rank and cell); ``forkserver`` forks ranks from a server process that imported
    torch once, so a matrix of many cells starts its ranks in about a second instead of
    the seconds an import of torch takes (both are CUDA-safe; spawn is the default).
    """

    world_size: int | None = attrs.field(default=None, validator=_positive_or_none)
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    timeout_seconds: float = attrs.field(default=900.0, validator=attrs.validators.gt(0.0))
    threads_per_rank: int | None = attrs.field(default=None, validator=_positive_or_none)
    baseline: bool = True
    find_unused_parameters: bool = False
    bucket_cap_mb: float = attrs.field(default=25.0, validator=attrs.validators.gt(0.0))
    start_method: Literal["spawn", "forkserver"] = "spawn"


@attrs.frozen
class DdpPlan:
    """Options resolved for one cell's device and thread count."""

    world_size: int
    backend: str
    timeout_seconds: float
    threads_per_rank: int
    baseline: bool
    find_unused_parameters: bool
    bucket_cap_mb: float
    start_method: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def parse_options(data: Mapping[str, Any] | None, where: str = OPTIONS_WHERE) -> DdpOptions:
    from keisei_core.plugin import structure_options as structure

    return structure(dict(data or {}), DdpOptions, where)


def resolve_plan(options: DdpOptions, *, device: str, threads: int, gpus: int = 0) -> DdpPlan:
    """Fill defaults for this cell; a combination that cannot work is a ConfigError."""
    backend = options.backend
    if backend == "auto":
        backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl" and device != "cuda":
        raise ConfigError(f"{OPTIONS_WHERE}.backend: 'nccl' needs device 'cuda' (this run is on {device}); use gloo")
    if device == "cuda":
        world_size = options.world_size or max(gpus, 1)
    else:
        world_size = options.world_size or DEFAULT_CPU_WORLD_SIZE
    per_rank = options.threads_per_rank
    if per_rank is None:
        per_rank = max(1, threads // world_size) if device == "cpu" else max(1, threads)
    return DdpPlan(
        world_size=world_size,
        backend=backend,
        timeout_seconds=options.timeout_seconds,
        threads_per_rank=per_rank,
        baseline=options.baseline,
        find_unused_parameters=options.find_unused_parameters,
        bucket_cap_mb=options.bucket_cap_mb,
        start_method=options.start_method,
    )
