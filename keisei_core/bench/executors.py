"""Where a benchmark's cells run: the executors of ``keisei_core.bench.run``.

The engine plans the run (which cells, in which order, grouped by model entry, strategy
and mode, and only the cells a shard owns) and records what comes back; an executor
turns each :class:`GroupJob` into finished :class:`~keisei_core.bench.results.CellRecord`
objects:

- :class:`InProcessExecutor` (``"in-process"``, the default): builds the group's model,
  applies the strategy once and runs every cell in this process.
- :class:`ChildProcessExecutor` (``"child-process"``): runs each group in a fresh Python
  (``python -m keisei_core.bench.child``, the child mechanism the memory and compile-time
  probes use), so a segfault, an out-of-memory kill or a hang of one group marks that
  group's cells ``failed`` and the run goes on. Each child loads the same plugins and
  rebuilds the model from the config; the W&B reporter's per-group checkpoint artifact is
  not logged (the model lives in the child).
- A plugin may bring its own: keisei-plugin-distributed's torchrun runner runs every
  cell across the ranks of a process group (``Executor`` and ``GroupJob`` are in the
  plugin API).

Config: ``[bench] executor = "in-process" | "child-process"``; Python:
``keisei_core.bench.run(config, executor="child-process")`` or an :class:`Executor`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.bench.results import CellRecord
from keisei_core.errors import ConfigError
from keisei_core.specs import ProbeSpec

if TYPE_CHECKING:
    from keisei_core.bench.engine import BenchEngine
    from keisei_core.config.experiment import ExperimentConfig, ModelEntry
    from keisei_core.plugins import PluginHost

GROUP_TASK_KIND = "group"


@attrs.define
class GroupJob:
    """One (model entry, strategy, mode) of a run and the cells of it this run owns.

    ``cells`` lists (probe, batch size) in run order. The methods give an executor what
    every cell record needs without reaching into the engine."""

    entry: ModelEntry
    strategy: str
    training: bool
    cells: list[tuple[ProbeSpec, int]]
    engine: BenchEngine = attrs.field(repr=False)

    @property
    def config(self) -> ExperimentConfig:
        return self.engine.config

    @property
    def host(self) -> PluginHost:
        return self.engine.host

    @property
    def plugins(self) -> list[str]:
        """The plugins a process rebuilding this group must load (``-p`` and the config's)."""
        return list(self.engine.plugins)

    @property
    def label(self) -> str:
        return f"{self.entry.display_name}/{self.strategy}"

    def activity(self, text: str) -> None:
        """Tell the run's reporters what is happening now (the progress line shows it)."""
        self.engine.report_activity(text)

    def unsupported_reason(self) -> str | None:
        """Why the strategy cannot run this group's device, dtype or mode (None: it can)."""
        return self.engine.unsupported_reason(self.strategy, self.training)

    def new_cell(self, probe: ProbeSpec, batch_size: int, *, model_options: Mapping[str, Any] | None = None) -> CellRecord:
        """An ``ok`` record of one of this group's cells, to be filled in by the executor."""
        return self.engine.new_cell(self.entry, self.strategy, probe, batch_size, model_options=model_options)

    def failed_cells(self, reason: str) -> Iterator[CellRecord]:
        """Every cell of the group, ``failed`` with ``reason`` (nothing of it could run)."""
        for probe, batch_size in self.cells:
            cell = self.new_cell(probe, batch_size)
            cell.status, cell.reason = "failed", reason
            yield cell

    def run_here(self) -> Iterator[CellRecord]:
        """Build, compile and measure the group in this process (the in-process path)."""
        return self.engine.run_group_here(self)

    def task(self) -> dict[str, Any]:
        """The JSON recipe a child process rebuilds this group from."""
        from keisei_core.config.experiment import experiment_to_dict

        return {
            "kind": GROUP_TASK_KIND,
            "config": experiment_to_dict(self.config),
            "config_path": self.engine.config_path,
            "plugins": self.plugins,
            "model_index": self.config.models.index(self.entry),
            "strategy": self.strategy,
            "training": self.training,
            "cells": [[probe.name, batch_size] for probe, batch_size in self.cells],
            "results_path": str(self.engine.results_path),
            "threads": self.engine.threads,
        }


class Executor:
    """Runs a benchmark's groups of cells; subclass and override :meth:`run_group`.

    ``start`` is called once before the first group (after the config was validated) and
    returns facts for the run's manifest; ``close`` once at the end, ``completed`` False
    when the run raised or was interrupted. ``writes_results`` False makes the engine keep
    the results in memory only (every rank of a distributed run but rank 0)."""

    name = "custom"
    writes_results = True

    def start(self, config: ExperimentConfig, host: PluginHost) -> dict[str, Any]:
        return {}

    def run_group(self, job: GroupJob) -> Iterator[CellRecord]:
        raise NotImplementedError(f"{type(self).__name__} does not implement run_group")

    def close(self, completed: bool) -> None:
        return None


class InProcessExecutor(Executor):
    """Every group built and measured in this process, one after another."""

    name = "in-process"

    def run_group(self, job: GroupJob) -> Iterator[CellRecord]:
        return job.run_here()


class ChildProcessExecutor(Executor):
    """Each group in a fresh child Python; a crash, kill or hang fails only that group."""

    name = "child-process"

    def __init__(self, timeout_seconds: float | None = None) -> None:
        self.timeout_seconds = timeout_seconds

    def run_group(self, job: GroupJob) -> Iterator[CellRecord]:
        from keisei_core.bench.child import ChildError, run_child

        timeout = self.timeout_seconds or job.config.bench.child_timeout_seconds
        job.activity(f"{job.label} (child process)")
        try:
            result = run_child(job.task(), timeout=timeout)
        except ChildError as exc:
            yield from job.failed_cells(f"{job.label} in a child process: {exc}")
            return
        for data in result["cells"]:
            yield CellRecord.from_dict(data)


EXECUTORS: dict[str, type[Executor]] = {
    InProcessExecutor.name: InProcessExecutor,
    ChildProcessExecutor.name: ChildProcessExecutor,
}


def resolve_executor(executor: Executor | str | None, config: ExperimentConfig) -> Executor:
    """``executor`` as an :class:`Executor`: an instance as given, a name, or (None) the
    config's ``[bench] executor``; an unknown name is one error listing the known ones."""
    if isinstance(executor, Executor):
        return executor
    name = executor if executor is not None else config.bench.executor
    known = EXECUTORS.get(name)
    if known is None:
        raise ConfigError(f"executor: unknown executor {name!r}; known: {', '.join(sorted(EXECUTORS))}")
    return known()


def run_group_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """The child side of :class:`ChildProcessExecutor`: rebuild the run's engine from the
    task, run the one group in this process and return its cells as JSON dicts."""
    import torch

    from keisei_core.bench.engine import BenchEngine
    from keisei_core.config.converter import structure
    from keisei_core.config.experiment import ExperimentConfig
    from keisei_core.plugins import PluginHost

    config = structure(task["config"], ExperimentConfig, "child task")
    host = PluginHost(list(task["plugins"]), warn=lambda _message: None).load()
    engine = BenchEngine(
        config, host, Path(task["results_path"]), config_path=task.get("config_path"),
        plugins=list(task["plugins"]), executor=InProcessExecutor(),
    )
    engine.threads = int(task["threads"])
    torch.set_num_threads(engine.threads)
    probes = {probe.name: probe for probe in engine.probe_specs()}
    job = GroupJob(
        entry=config.models[int(task["model_index"])],
        strategy=str(task["strategy"]),
        training=bool(task["training"]),
        cells=[(probes[name], int(batch_size)) for name, batch_size in task["cells"]],
        engine=engine,
    )
    scratch = Path(tempfile.mkdtemp(prefix="keisei-bench-child-"))
    engine.scratch_root = scratch
    try:
        # Cell failures are recorded on the cells; anything else raised here reaches the
        # parent as the child's one-line error, which fails the group's cells.
        return {"cells": [cell.to_dict() for cell in job.run_here()]}
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
