"""The Reporter protocol: what a benchmark run reports to as it goes and when it ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keisei_core.bench.results import CellRecord, Results
    from keisei_core.compile.report import CompileReport


class Reporter:
    """What a run reports to; every method does nothing unless overridden.

    The engine calls ``on_plan`` (how many cells the run will record), ``on_start``,
    ``on_activity`` (what it is doing now: building a group, measuring a cell),
    ``on_group`` (a model and strategy built and compiled in this process, for artifact
    logging) and ``on_cell`` as the run goes; ``on_finish`` comes once the engine returns,
    in the order the reporters were given (later reporters may read what earlier ones
    produced); ``on_abort`` instead when the run raised (Ctrl-C is not an abort: an
    interrupted run finishes with its cells).
    """

    def on_plan(self, total_cells: int) -> None:
        """The run will record ``total_cells`` cells (this shard's, for a sharded run)."""

    def on_start(self, results: Results) -> None:
        """The run starts; ``results`` has its run facts and manifest, no cells yet."""

    def on_activity(self, text: str) -> None:
        """What the run does now, e.g. ``tiny/eager build`` or ``tiny/eager/b64/latency``."""

    def on_group(self, label: str, strategy: str, model: Any, report: CompileReport | None, training: bool) -> None:
        """One (model, strategy, mode) is built and compiled."""

    def on_cell(self, cell: CellRecord, results: Results) -> None:
        """One cell finished (ok, failed or skipped); it is already in ``results``."""

    def on_finish(self, results: Results) -> None:
        """The run ended (complete or interrupted)."""

    def on_abort(self) -> None:
        """The run raised before it could finish."""
