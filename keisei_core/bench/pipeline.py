"""``keisei_core.bench.run``: the benchmark pipeline as a library call.

One call from a config to :class:`~keisei_core.bench.results.Results`, the same for the
``keisei bench`` command and for a notebook::

    import keisei_core.bench as kb

    results = kb.run("configs/quickstart.toml", overrides=["batch_sizes=[1]"])
    frame = results.to_pandas()

The engine writes ``results.json`` itself (atomically, after every cell). Everything else
a run produces comes from :class:`Reporter` objects, which see the run's plan and start,
what it is doing, every compiled group and every cell as it finishes, and the finished
(or aborted) run: :class:`TableReporter` (``table.txt``), :class:`PlotsReporter` (PNG
plots, when matplotlib is installed), :class:`WandbReporter` (a W&B run) and
:class:`ProgressReporter` (a progress line on stderr). The default reporters are the
table and the plots; the CLI adds W&B when the config asks for it and the progress line
when stderr is a terminal. Where the cells run is the executor's business
(:mod:`keisei_core.bench.executors`: in this process, in child processes, on ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keisei_core.bench.executors import Executor
from keisei_core.bench.progress import ProgressReporter
from keisei_core.bench.reporter import Reporter

if TYPE_CHECKING:
    from keisei_core.bench.results import CellRecord, Results
    from keisei_core.bench.shards import Shard
    from keisei_core.compile.report import CompileReport
    from keisei_core.config.experiment import ExperimentConfig
    from keisei_core.plugins import PluginHost
    from keisei_core.tracking import WandbTracker


class TableReporter(Reporter):
    """Writes ``table.txt`` (the header and the results table); keeps both as text."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.header = ""
        self.table = ""

    def on_finish(self, results: Results) -> None:
        from keisei_core.bench.table import format_header, format_results_table

        self.table = format_results_table(results)
        self.header = format_header(results)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "table.txt").write_text(f"{self.header}\n{self.table}\n", encoding="utf-8")


class PlotsReporter(Reporter):
    """Writes the PNG plots the results support; without matplotlib, a note saying so."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.plots: list[Path] = []
        self.notes: list[str] = []

    def on_finish(self, results: Results) -> None:
        from keisei_core.optional import available, missing_message

        if not available("matplotlib"):
            self.notes.append(f"plots: skipped, {missing_message('matplotlib', 'plotting')}")
            return
        from keisei_core.bench.plots import write_plots

        self.plots = write_plots(results, self.out_dir)


class WandbReporter(Reporter):
    """Mirrors the run into a W&B run; at the end logs the table and plots that the
    given table and plots reporters (earlier in the list) produced."""

    def __init__(self, tracker: WandbTracker, table: TableReporter, plots: PlotsReporter) -> None:
        self.tracker = tracker
        self.table = table
        self.plots = plots

    @property
    def run_dir(self) -> str | None:
        return self.tracker.run_dir

    def on_start(self, results: Results) -> None:
        self.tracker.on_start(results)

    def on_group(self, label: str, strategy: str, model: Any, report: CompileReport | None, training: bool) -> None:
        log_group = getattr(self.tracker, "on_group", None)  # trackers may skip artifacts
        if log_group is not None:
            log_group(label, strategy, model, report, training)

    def on_cell(self, cell: CellRecord, results: Results) -> None:
        self.tracker.on_cell(cell, results)

    def on_finish(self, results: Results) -> None:
        self.tracker.finish(results, table=self.table.table, plots=self.plots.plots)

    def on_abort(self) -> None:
        self.tracker.abort()


def default_run_name(config: ExperimentConfig, shard: Shard | None = None) -> str:
    part = f"-shard-{shard.index}-of-{shard.count}" if shard is not None else ""
    return f"{config.name}{part}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run(
    config: ExperimentConfig | str | Path,
    *,
    host: PluginHost | None = None,
    reporters: Sequence[Reporter] | None = None,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    plugins: Sequence[str] = (),
    progress: bool = False,
    run_name: str | None = None,
    config_path: str | None = None,
    shard: Shard | None = None,
    executor: Executor | str | None = None,
) -> Results:
    """Run a benchmark matrix and return its results.

    ``config`` is an :class:`ExperimentConfig` or a TOML path (with ``overrides``, as
    ``--set``). ``host`` is a loaded plugin host (default: one with the environment's
    plugins, ``plugins`` and the config's ``plugins``). Results go to ``out_dir``
    (default ``<output_dir>/<run name>``): ``results.json`` always (unless the executor
    keeps them in memory), then whatever the ``reporters`` write (default: the table and
    the plots); ``progress=True`` adds a :class:`ProgressReporter` on stderr. ``executor``
    says where the cells run: ``"in-process"``, ``"child-process"`` (each group in a
    fresh Python) or an :class:`~keisei_core.bench.executors.Executor`; default the
    config's ``[bench] executor``. A bad name, option or composition is one
    :class:`~keisei_core.errors.KeiseiError` before anything runs.
    """
    from keisei_core.bench.engine import BenchEngine
    from keisei_core.config import load_experiment
    from keisei_core.config.experiment import ExperimentConfig

    if not isinstance(config, ExperimentConfig):
        config_path = config_path or str(config)
        config = load_experiment(config, list(overrides))
    if host is None:
        from keisei_core.plugins import PluginHost

        host = PluginHost([*plugins, *config.plugins]).load()
    run_name = run_name or default_run_name(config, shard)
    folder = Path(out_dir) if out_dir is not None else Path(config.output_dir) / run_name
    chosen = list(reporters) if reporters is not None else [TableReporter(folder), PlotsReporter(folder)]
    if progress:
        chosen.append(ProgressReporter())
    from keisei_core.bench.executors import resolve_executor

    engine = BenchEngine(
        config, host, folder / "results.json", config_path=config_path,
        plugins=[*plugins, *config.plugins], observers=chosen,
        run_name=run_name, shard=shard, executor=resolve_executor(executor, config),
    )
    engine.validate()
    try:
        results = engine.run()
    except BaseException:
        for reporter in chosen:
            reporter.on_abort()
        raise
    for reporter in chosen:
        reporter.on_finish(results)
    return results
