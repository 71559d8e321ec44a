"""The benchmark engine: probes, statistics, the matrix runner, results, reports.

``run(config, ...) -> Results`` is the whole pipeline (:mod:`keisei_core.bench.pipeline`),
with :class:`Reporter` for what a run writes besides ``results.json``. Probe authors need
only the plugin API (:mod:`keisei_core.plugin`). Importing this package never imports torch.
"""

from __future__ import annotations

from keisei_core.bench.pipeline import PlotsReporter, Reporter, TableReporter, WandbReporter, run
from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported, RolloutBatch
from keisei_core.bench.stats import Statistics, summarize

__all__ = [
    "PlotsReporter",
    "ProbeContext",
    "ProbeResult",
    "ProbeUnsupported",
    "Reporter",
    "RolloutBatch",
    "Statistics",
    "TableReporter",
    "WandbReporter",
    "run",
    "summarize",
]
