"""The benchmark engine: probes, statistics, the matrix runner, results, reports.

``run(config, ...) -> Results`` is the whole pipeline (:mod:`keisei_core.bench.pipeline`),
with :class:`Reporter` for what a run writes besides ``results.json`` and
:class:`Executor` for where its cells run (:mod:`keisei_core.bench.executors`). Probe authors need
only the plugin API (:mod:`keisei_core.plugin`). Importing this package never imports torch.
"""

from __future__ import annotations

from keisei_core.bench.executors import ChildProcessExecutor, Executor, GroupJob, InProcessExecutor
from keisei_core.bench.pipeline import PlotsReporter, Reporter, TableReporter, WandbReporter, run
from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported, RolloutBatch
from keisei_core.bench.progress import ProgressReporter
from keisei_core.stats import Statistics, summarize

__all__ = [
    "ChildProcessExecutor",
    "Executor",
    "GroupJob",
    "InProcessExecutor",
    "PlotsReporter",
    "ProbeContext",
    "ProbeResult",
    "ProbeUnsupported",
    "ProgressReporter",
    "Reporter",
    "RolloutBatch",
    "Statistics",
    "TableReporter",
    "WandbReporter",
    "run",
    "summarize",
]
