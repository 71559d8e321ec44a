"""Robust summary statistics of timing samples (no torch; numpy computes the quantiles).

The original Keisei benchmarker dropped samples beyond two standard deviations and
reported mean and std only (defect 5). Here nothing is dropped: the summary leads with
the median and the inter-quartile range, keeps mean and std for reference, and *counts*
Tukey outliers (beyond 1.5 IQR of the quartiles) without removing them. A bounded copy of
the raw samples is kept so that ``keisei compare`` can bootstrap a confidence interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import cattrs

# Raw samples kept per statistics object (evenly thinned beyond this), so results files
# stay small while compare still has enough data to bootstrap from.
MAX_STORED_SAMPLES = 512

# IQR/median above this is reported as noisy even when the run's own target was looser.
NOISE_WARNING_RATIO = 0.10


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (type 7, numpy's default ``method="linear"``) of
    sorted values, computed by ``numpy.quantile`` (imported here: the probe API, which
    imports this module, stays light for listing)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    import numpy as np

    return float(np.quantile(np.asarray(sorted_values, dtype=np.float64), q, method="linear"))


def thin(values: Sequence[float], limit: int = MAX_STORED_SAMPLES) -> list[float]:
    """At most ``limit`` values, taken evenly across the sequence (keeps time order)."""
    if len(values) <= limit:
        return list(values)
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


def _float_tuple(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@attrs.frozen
class Statistics:
    """Summary of repeated measurements of one quantity (seconds per call for timings).

    ``outliers_low``/``outliers_high`` count samples outside the Tukey fences; they are
    included in every other figure. ``stop_reason`` says why sampling ended: ``stable``
    (IQR/median under the target), ``budget`` (time budget spent), ``max_samples``, or
    ``given`` for statistics computed from samples handed in.
    """

    unit: str
    n: int
    median: float
    mean: float
    std: float
    q1: float
    q3: float
    p10: float
    p90: float
    minimum: float
    maximum: float
    outliers_low: int
    outliers_high: int
    warmup_samples: int = 0
    calls_per_sample: int = 1
    stop_reason: str = "given"
    samples: tuple[float, ...] = attrs.field(default=(), converter=_float_tuple)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def iqr_ratio(self) -> float:
        """IQR / median: the relative spread used as the stability criterion."""
        return self.iqr / self.median if self.median > 0 else math.inf

    @property
    def outliers(self) -> int:
        return self.outliers_low + self.outliers_high

    @property
    def noisy(self) -> bool:
        return self.iqr_ratio > NOISE_WARNING_RATIO

    def noise_warning(self) -> str | None:
        """A one-line warning when the spread is too large to trust small differences."""
        if not self.noisy:
            return None
        return (
            f"noisy measurement: IQR is {self.iqr_ratio:.0%} of the median over {self.n} samples "
            f"({self.outliers} Tukey outliers); close other programs or raise the time budget"
        )

    def scaled(self, factor: float, unit: str) -> Statistics:
        """The same statistics in another unit (e.g. milliseconds); ``factor`` must be > 0."""
        if factor <= 0:
            raise ValueError("scale factor must be positive")
        return attrs.evolve(
            self,
            unit=unit,
            median=self.median * factor,
            mean=self.mean * factor,
            std=self.std * factor,
            q1=self.q1 * factor,
            q3=self.q3 * factor,
            p10=self.p10 * factor,
            p90=self.p90 * factor,
            minimum=self.minimum * factor,
            maximum=self.maximum * factor,
            samples=tuple(s * factor for s in self.samples),
        )

    def mapped(self, fn: Callable[[float], float], unit: str) -> Statistics:
        """Statistics of ``fn(sample)`` for a monotone ``fn`` (e.g. seconds per call to
        samples per second): re-summarised from the stored samples, so a throughput's
        median is exactly ``fn`` of the time median when fewer than 512 samples were taken."""
        if not self.samples:
            raise ValueError("no stored samples to map")
        return summarize(
            [fn(s) for s in self.samples],
            unit=unit,
            warmup_samples=self.warmup_samples,
            calls_per_sample=self.calls_per_sample,
            stop_reason=self.stop_reason,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields (``samples`` as a list) and, for readers of the JSON, the derived
        ``iqr``, ``iqr_ratio`` (None when not finite) and ``noisy``: the project
        converter's unstructuring (:func:`statistics_converter`)."""
        data: dict[str, Any] = statistics_converter().unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Statistics:
        """Statistics back from :meth:`to_dict`'s data; keys that are not fields (the derived
        ones) are ignored."""
        return statistics_converter().structure(data, cls)


# -- the file boundary --------------------------------------------------------------------
# Statistics are (un)structured by the project's one cattrs converter; its hooks for them
# are registered on first use, so that importing this module stays light.
def _register_hooks(converter: cattrs.Converter) -> None:
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    unstructure_fields = make_dict_unstructure_fn(Statistics, converter, samples=override(unstruct_hook=list))
    # Keys that are not fields (iqr, iqr_ratio, noisy) are ignored when reading.
    structure_fields = make_dict_structure_fn(Statistics, converter, _cattrs_forbid_extra_keys=False)

    def unstructure_statistics(stats: Statistics) -> dict[str, Any]:
        data = unstructure_fields(stats)
        ratio = stats.iqr_ratio
        data.update(iqr=stats.iqr, iqr_ratio=ratio if math.isfinite(ratio) else None, noisy=stats.noisy)
        return data

    converter.register_unstructure_hook(Statistics, unstructure_statistics)
    converter.register_structure_hook(Statistics, structure_fields)


@functools.cache
def statistics_converter() -> cattrs.Converter:
    """The project's converter (:mod:`keisei_core.serialization`) with the hooks of
    :class:`Statistics` registered (once, here): hooks generated for classes that hold
    statistics must be made after this is called."""
    from keisei_core.serialization import converter

    _register_hooks(converter)
    return converter


def summarize(
    samples: Sequence[float],
    *,
    unit: str = "s",
    warmup_samples: int = 0,
    calls_per_sample: int = 1,
    stop_reason: str = "given",
) -> Statistics:
    """Summarise ``samples`` (at least one). Nothing is dropped; outliers are counted."""
    values = [float(v) for v in samples]
    if not values:
        raise ValueError("cannot summarise zero samples")
    if any(not math.isfinite(v) for v in values):
        raise ValueError("samples must be finite numbers")
    ordered = sorted(values)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / (n - 1)) if n > 1 else 0.0
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    fence = 1.5 * (q3 - q1)
    return Statistics(
        unit=unit,
        n=n,
        median=quantile(ordered, 0.5),
        mean=mean,
        std=std,
        q1=q1,
        q3=q3,
        p10=quantile(ordered, 0.10),
        p90=quantile(ordered, 0.90),
        minimum=ordered[0],
        maximum=ordered[-1],
        outliers_low=sum(1 for v in ordered if v < q1 - fence),
        outliers_high=sum(1 for v in ordered if v > q3 + fence),
        warmup_samples=warmup_samples,
        calls_per_sample=calls_per_sample,
        stop_reason=stop_reason,
        samples=tuple(thin(values)),
    )


def is_stable(samples: Sequence[float], target_iqr_ratio: float) -> bool:
    """True when the relative spread (IQR / median) of ``samples`` is under the target."""
    if len(samples) < 3:
        return False
    ordered = sorted(samples)
    median = quantile(ordered, 0.5)
    if median <= 0:
        return False
    return (quantile(ordered, 0.75) - quantile(ordered, 0.25)) / median <= target_iqr_ratio
