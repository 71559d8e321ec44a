"""The benchmark engine: probes, statistics, the matrix runner, results, reports.

Probe authors need only :mod:`keisei_core.bench.probe_api` (``ProbeContext``,
``ProbeResult``, ``ProbeUnsupported``). Importing this package never imports torch.
"""

from __future__ import annotations

from keisei_core.bench.probe_api import ProbeContext, ProbeResult, ProbeUnsupported, RolloutBatch
from keisei_core.bench.stats import Statistics, summarize

__all__ = ["ProbeContext", "ProbeResult", "ProbeUnsupported", "RolloutBatch", "Statistics", "summarize"]
