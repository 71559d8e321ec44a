"""The matrix runner: every (model, strategy, batch size, probe) cell, isolated, recorded at once.

The engine plans the run and records it; an executor (:mod:`keisei_core.bench.executors`)
runs each (model entry, strategy, mode) group of cells: in this process by default, or
in a child process, or across the ranks of a torchrun job.
In this process, for each model entry and strategy the engine builds the eager model from a fixed seed,
applies the strategy once per mode (eval for inference probes, train for probes with
``needs_training``) and shares that pair across the mode's batch sizes and probes: a
compile is the most expensive step of a cell and does not depend on the probe.

Isolation: a model that fails to build, a strategy that fails to apply or a probe that
raises marks the affected cells ``failed`` with a one-line reason (the traceback goes to
``failures.log`` beside the results); a strategy or probe that does not support the
cell's device, dtype or mode marks them ``skipped``. The run goes on either way.
Ctrl-C (KeyboardInterrupt) ends the run cleanly: the results file keeps every finished
cell and its run status says ``interrupted``. SIGTERM (what ``timeout``, schedulers and
container runtimes send) is handled the same way, with ``run.signal`` saying which came;
a second SIGTERM while the run is being wound up is ignored so the results are written.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported
from keisei_core.bench.reporter import Reporter
from keisei_core.bench.results import CellRecord, Results
from keisei_core.bench.shards import CellId, Shard, config_fingerprint, shard_cells
from keisei_core.bench.strategies import (
    Strategy,
    StrategyFailed,
    StrategyUnsupported,
    apply_strategy,
    check_composition,
    check_support,
    is_baseline,
)
from keisei_core.compile.report import CompileReport
from keisei_core.config.experiment import ExperimentConfig, ModelEntry, experiment_to_dict
from keisei_core.errors import ConfigError, KeiseiError
from keisei_core.specs import ProbeSpec

if TYPE_CHECKING:
    from torch import nn

    from keisei_core.bench.executors import Executor, GroupJob
    from keisei_core.plugins import PluginHost


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised where the run is, unwound like Ctrl-C (every
    ``except KeyboardInterrupt: raise`` of the engine lets it through)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[dict[str, bool]]:
    """While the block runs, SIGTERM raises :class:`Terminated` once; later ones are
    ignored until the previous handler is restored. Only the main thread can set handlers:
    elsewhere this does nothing."""
    state = {"received": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(_signum: int, _frame: Any) -> None:
        if state["received"]:
            return
        state["received"] = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line(exc: BaseException) -> str:
    """A cell's failure reason: the exception in one line, its message cut at 400 characters."""
    from keisei_core.oneline import one_line as flatten

    return flatten(exc, limit=403)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@attrs.define
class _Group:
    """One (model entry, strategy, mode): the models, or why there are none."""

    entry: ModelEntry
    strategy: str
    training: bool
    model: Any = None
    eager: Any = None
    report: CompileReport | None = None
    status: str = "ok"
    reason: str | None = None


@attrs.define
class BenchEngine:
    """Runs an :class:`ExperimentConfig` against a loaded plugin host."""

    config: ExperimentConfig
    host: PluginHost
    results_path: Path
    config_path: str | None = None
    plugins: Sequence[str] = ()
    observers: Sequence[Reporter] = ()
    # A progress line on stderr (a ProgressReporter added to the observers).
    progress: bool = False
    run_name: str | None = None
    # ``keisei bench --shard I/N``: run only the cells this shard owns (see bench.shards).
    shard: Shard | None = None
    # Each strategy name parsed once, by validate(): its composition (None for "auto").
    compositions: dict[str, Any] = attrs.field(factory=dict, init=False)
    # Where the groups run; None: the config's ``[bench] executor``.
    executor: Executor | None = None
    # Set while a run goes on (read by the executors through GroupJob).
    threads: int = attrs.field(default=0, init=False)
    scratch_root: Path | None = attrs.field(default=None, init=False)
    run_cache: dict[str, Any] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        if self.progress:
            from keisei_core.bench.progress import ProgressReporter

            self.observers = [*self.observers, ProgressReporter()]

    # -- planning ------------------------------------------------------------------------
    def validate(self) -> None:
        """Every name and model option is known, labels are unique; one error otherwise."""
        from keisei_core.bench.checks import check_names

        check_names(self.config, self.host, where=self.config_path or "config")
        self.compositions = {name: check_composition(self.host, name) for name in self.config.strategies}
        labels = [entry.display_name for entry in self.config.models]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(
                f"{self.config_path or 'config'}: models {repeated} appear more than once; "
                "give each a distinct 'label'"
            )
        if self.config.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise KeiseiError("config asks for device 'cuda' but torch.cuda.is_available() is False")

    def probe_specs(self) -> list[ProbeSpec]:
        return [self.host.probes.get(name) for name in self.config.probes]

    def total_cells(self) -> int:
        c = self.config
        if self.shard is not None:
            return len(shard_cells(c, self.shard))
        return len(c.models) * len(c.strategies) * len(c.batch_sizes) * len(c.probes)

    def selected_cells(self) -> set[CellId] | None:
        """The cells this run owns (None: all of them)."""
        return set(shard_cells(self.config, self.shard)) if self.shard is not None else None

    # -- running -------------------------------------------------------------------------
    def run(self) -> Results:
        import torch

        from keisei_core.bench.executors import resolve_executor

        self.validate()
        config = self.config
        executor = resolve_executor(self.executor, config)
        threads = config.bench.threads or torch.get_num_threads()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        from keisei_core.environment import environment_manifest

        results = Results(
            run={
                "name": self.run_name or config.name,
                "status": "running",
                "started": now_iso(),
                "finished": None,
                "config_path": self.config_path,
                "config": experiment_to_dict(config),
                "config_fingerprint": config_fingerprint(config),
                "shard": self.shard.to_dict() if self.shard is not None else None,
                # Who writes this file: a reader that finds "running" and no such process
                # knows the run was killed (see results.load_results).
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "baseline": self.host.baseline_strategy(),
                "executor": executor.name,
            },
            manifest=environment_manifest(self.host, threads=threads, device=config.device),
            # An executor may keep the results in memory (the ranks of a distributed run but 0).
            path=self.results_path if executor.writes_results else None,
        )
        self.run_cache = {"calibration": results.calibration}
        completed = False
        with _sigterm_as_interrupt() as termination:
            try:
                results.manifest.update(executor.start(config, self.host))
                self._run_cells(results, executor, threads, previous_threads)
                completed = True
            except KeyboardInterrupt:
                results.run["status"] = "interrupted"
                results.run["signal"] = "SIGTERM" if termination["received"] else "SIGINT"
                print(
                    f"\nkeisei: {'terminated (SIGTERM)' if termination['received'] else 'interrupted'}; "
                    f"{len(results.cells)} finished cells kept"
                    + (f" in {results.path}" if results.path is not None else ""),
                    file=sys.stderr,
                )
            except BaseException:
                # Not a cell's failure (those are recorded on the cell): the run itself broke.
                results.run.update(status="failed", finished=now_iso())
                _save(results)
                raise
            finally:
                executor.close(completed)
            from keisei_core.environment import load_average

            results.manifest["load_average_at_end"] = load_average()
            results.run["finished"] = now_iso()
            _save(results)
        return results

    def _run_cells(self, results: Results, executor: Executor, threads: int, previous_threads: int) -> None:
        import torch

        self.threads = threads
        self.scratch_root = Path(tempfile.mkdtemp(prefix="keisei-bench-"))
        try:
            for observer in self.observers:
                observer.on_plan(self.total_cells())
            _save(results)
            for observer in self.observers:
                observer.on_start(results)
            for job in self.group_jobs():
                for cell in executor.run_group(job):
                    results.append(cell)
                    for observer in self.observers:
                        observer.on_cell(cell, results)
            results.run["status"] = "complete"
        finally:
            torch.set_num_threads(previous_threads)
            _remove_tree(self.scratch_root)

    def group_jobs(self) -> Iterator[GroupJob]:
        """The run's groups in order, each with the cells of it this run (shard) owns."""
        from keisei_core.bench.executors import GroupJob

        probes = self.probe_specs()
        selected = self.selected_cells()
        for entry in self.config.models:
            for strategy in self.config.strategies:
                for training in (False, True):
                    cells = [
                        (probe, batch_size)
                        for batch_size in self.config.batch_sizes
                        for probe in probes
                        if probe.needs_training == training
                        and (selected is None or (entry.display_name, strategy, probe.name, batch_size) in selected)
                    ]
                    if cells:  # nothing of this (model, strategy, mode) in this shard: no build
                        yield GroupJob(entry, strategy, training, cells, self)

    def run_group_here(self, job: GroupJob) -> Iterator[CellRecord]:
        """Build the group's models in this process and measure each of its cells."""
        assert self.scratch_root is not None, "run_group_here runs inside BenchEngine.run"
        self.report_activity(f"{job.label} build")
        group = self._build_group(job.entry, job.strategy, job.training)
        if group.status == "ok":
            self._notify_group(group)
        try:
            for probe, batch_size in job.cells:
                self.report_activity(f"{job.label}/b{batch_size}/{probe.name}")
                yield self._run_cell(group, probe, batch_size, self.threads, self.scratch_root, self.run_cache)
        finally:
            group.model = group.eager = None
            gc.collect()

    def report_activity(self, text: str) -> None:
        for observer in self.observers:
            observer.on_activity(text)

    def unsupported_reason(self, strategy: str, training: bool) -> str | None:
        """Why ``strategy`` cannot run on the config's device and dtype in this mode."""
        try:
            check_support(self.host, strategy, device=self.config.device, dtype=self.config.dtype, training=training)
        except StrategyUnsupported as exc:
            return str(exc)
        return None

    def new_cell(
        self,
        entry: ModelEntry,
        strategy: str,
        probe: ProbeSpec,
        batch_size: int,
        *,
        model_options: Mapping[str, Any] | None = None,
        report: CompileReport | None = None,
    ) -> CellRecord:
        """An ``ok`` record of one cell; the model options default to the entry's,
        resolved against the model's option class (what a built model would carry)."""
        if model_options is None:
            from keisei_core.models import options_as_dict, resolve_options

            model_options = options_as_dict(resolve_options(self.host.models.get(entry.name), entry.options))
        return CellRecord(
            model=entry.name,
            model_label=entry.display_name,
            model_options=dict(model_options),
            strategy=strategy,
            probe=probe.name,
            batch_size=batch_size,
            device=self.config.device,
            dtype=self.config.dtype,
            status="ok",
            compile_report=report,
            speed_check=speed_check_at(report, batch_size),
        )

    def _strategy(self, name: str) -> Strategy:
        return self.compositions.get(name) or name

    def _build_models(self, entry: ModelEntry, strategy: str, training: bool) -> tuple[Any, Any, CompileReport | None]:
        import torch

        from keisei_core.introspect import model_shapes
        from keisei_core.models import build_from_spec, resolve_options
        from keisei_core.observations import make_observations

        config = self.config
        spec = self.host.models.get(entry.name)
        options = resolve_options(spec, entry.options)
        torch.manual_seed(config.seed)
        eager: nn.Module = build_from_spec(spec, options)
        eager = eager.to(device=config.device, dtype=_torch_dtype(config.dtype))
        eager.train(training)
        shapes = model_shapes(eager)
        example = make_observations(
            max(config.batch_sizes), shapes.observation[0], shapes.observation[1],
            seed=config.seed, device=config.device, dtype=_torch_dtype(config.dtype),
        )
        model, report = apply_strategy(
            self.host, self._strategy(strategy), eager,
            device=config.device, dtype=config.dtype, batch_sizes=config.batch_sizes,
            training=training, example_obs=example,
        )
        if hasattr(model, "train"):
            model.train(training)
        return model, eager, report

    def _notify_group(self, group: _Group) -> None:
        # The W&B reporter saves a checkpoint artifact here (in-process groups only).
        for observer in self.observers:
            observer.on_group(group.entry.display_name, group.strategy, group.model, group.report, group.training)

    def _recompile(self, entry: ModelEntry, strategy: str, training: bool) -> tuple[Any, Any]:
        model, _eager, report = self._build_models(entry, strategy, training)
        return model, report

    def _build_group(self, entry: ModelEntry, strategy: str, training: bool) -> _Group:
        group = _Group(entry, strategy, training)
        try:
            check_support(self.host, self._strategy(strategy), device=self.config.device, dtype=self.config.dtype,
                          training=training)
            group.model, group.eager, group.report = self._build_models(entry, strategy, training)
        except StrategyUnsupported as exc:
            group.status, group.reason = "skipped", str(exc)
        except StrategyFailed as exc:
            group.status, group.reason, group.report = "failed", str(exc), exc.report
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            group.status, group.reason = "failed", f"building {entry.display_name} with {strategy} failed: {one_line(exc)}"
            self._log_failure(f"{entry.display_name}/{strategy} (build)", exc)
        return group

    def _run_cell(
        self,
        group: _Group,
        probe: ProbeSpec,
        batch_size: int,
        threads: int,
        scratch_root: Path,
        run_cache: dict[str, Any],
    ) -> CellRecord:
        config = self.config
        entry = group.entry
        cell = self.new_cell(
            entry, group.strategy, probe, batch_size,
            model_options=getattr(group.eager, "keisei_model_options", None) or entry.options,
            report=group.report,
        )
        if cell.speed_check is not None and cell.speed_check.get("verdict") == "slower":
            cell.warnings.append(
                f"compile_model's speed check: {group.strategy} is slower than eager at batch {batch_size} "
                f"({cell.speed_check.get('speedup')}x)"
            )
        if group.status != "ok":
            cell.status, cell.reason = group.status, group.reason
            return cell
        if config.device not in probe.devices:
            cell.status, cell.reason = "skipped", f"probe '{probe.name}' does not run on {config.device}"
            return cell
        from keisei_core.introspect import model_shapes

        shapes = model_shapes(group.eager)
        scratch = scratch_root / f"cell-{id(cell)}"
        scratch.mkdir()
        context = ProbeContext(
            model=group.model,
            eager_model=group.eager,
            model_name=entry.name,
            model_options=cell.model_options,
            strategy=group.strategy,
            batch_size=batch_size,
            device=config.device,
            dtype=config.dtype,
            seed=config.seed,
            settings=config.bench,
            threads=threads,
            scratch_dir=scratch,
            observation_shape=shapes.observation,
            num_actions=shapes.num_actions,
            compile_report=group.report,
            training=group.training,
            recompile=lambda: self._recompile(entry, group.strategy, group.training),
            run_cache=run_cache,
            plugins=tuple(self.plugins),
            options=dict(config.probe_options.get(probe.name, {})),
            baseline=is_baseline(self.host, group.strategy),
        )
        start = time.perf_counter()
        try:
            result = probe.run(context)
            if not isinstance(result, ProbeResult):
                raise TypeError(f"probe '{probe.name}' returned {type(result).__name__}, expected ProbeResult")
            cell.result = result
            stats = result.statistics
            warning = stats.noise_warning() if stats is not None else None
            if warning:
                cell.warnings.append(warning)
        except ProbeUnsupported as exc:
            cell.status, cell.reason = "skipped", str(exc) or f"probe '{probe.name}' does not support this cell"
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            cell.status, cell.reason = "failed", one_line(exc)
            self._log_failure(f"{entry.display_name}/{group.strategy}/b{batch_size}/{probe.name}", exc)
        finally:
            cell.duration_seconds = round(time.perf_counter() - start, 3)
            _remove_tree(scratch)
        return cell

    def _log_failure(self, where: str, exc: BaseException) -> None:
        log = self.results_path.parent / "failures.log"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as handle:
            handle.write(f"== {now_iso()} {where}\n{text}\n")


def speed_check_at(report: CompileReport | None, batch_size: int) -> dict[str, Any] | None:
    """The compile report's speed check at ``batch_size`` (eager vs the strategy, paired),
    as the results file holds it."""
    speed = report.speed_at(batch_size) if report is not None else None
    if speed is None:
        return None
    from keisei_core.config.converter import unstructure
    from keisei_core.json_data import json_safe

    return json_safe(unstructure(speed))  # type: ignore[no-any-return]


def _torch_dtype(name: str) -> Any:
    from keisei_core.dtypes import torch_dtype

    return torch_dtype(name)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _save(results: Results) -> None:
    """Write the results file, unless the executor keeps the results in memory."""
    if results.path is not None:
        results.save()
