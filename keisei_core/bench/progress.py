"""A progress line for long runs: cells done / total, the current cell, elapsed and ETA.

A :class:`~keisei_core.bench.reporter.Reporter` like the others, drawn with tqdm (a core
dependency) on stderr by default. ``keisei bench`` adds it when stderr is a terminal
(``--progress`` / ``--no-progress`` decide otherwise); a notebook passes
``progress=True`` to ``keisei_core.bench.run`` or adds a ``ProgressReporter`` itself.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any

from keisei_core.bench.reporter import Reporter

if TYPE_CHECKING:
    from keisei_core.bench.results import CellRecord, Results


class ProgressReporter(Reporter):
    """One tqdm line: ``bench: 3/8 cells [00:12<00:20, ...] tiny/eager/b64/latency``.

    ``stream`` is where it is drawn (default stderr); ``min_interval`` the seconds between
    redraws (tqdm's ``mininterval``). ``activity`` keeps what the line last showed."""

    def __init__(self, stream: IO[str] | None = None, *, min_interval: float = 0.1) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self.total: int | None = None
        self.done = 0
        self.activity = ""
        self._bar: Any = None

    def on_plan(self, total_cells: int) -> None:
        from tqdm.auto import tqdm

        self.total, self.done = total_cells, 0
        self._close()
        self._bar = tqdm(
            total=total_cells, unit="cell", desc="bench", file=self.stream or sys.stderr,
            dynamic_ncols=True, mininterval=self.min_interval, leave=True,
        )

    def on_activity(self, text: str) -> None:
        self.activity = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    def on_cell(self, cell: CellRecord, results: Results) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)

    def on_finish(self, results: Results) -> None:
        self._close()

    def on_abort(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
