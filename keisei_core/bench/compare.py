"""``keisei compare OLD NEW``: per-cell change between two results files, with uncertainty.

Cells are matched on (model label, strategy, probe, batch size). For each pair of ``ok``
cells the ratio NEW/OLD of the headline values is reported with a 95 % bootstrap
confidence interval of the ratio of medians, resampling the raw samples stored in each
file (``scipy.stats.bootstrap``: both sides independently, 2,000 resamples, percentile
interval, fixed seed). The change is oriented by
the probe's ``higher_is_better``: a positive ``worse %`` is a regression.

A cell is a *regression* when its point estimate is worse than the threshold
(``--fail-above PCT``) **and** the change is significant: the interval lies entirely on
the worse side of no change *and* a two-sided Mann-Whitney U test on the raw samples
(``scipy.stats.mannwhitneyu``, exact with at most 20 samples a side and no ties) gives
p < 0.05 (the percentile bootstrap of a median alone is too optimistic with the
handful of samples a short budget yields). Cells without samples (single-shot values such as FLOP counts or peak
memory) have no interval: their change counts when it exceeds the threshold. A cell that
was ``ok`` in OLD and ``failed`` in NEW is a regression too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from keisei_core.bench.results import CellRecord, Results
from keisei_core.bench.table import format_number
from keisei_core.statuses import CellStatus
from keisei_core.text_table import format_table

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
MIN_SAMPLES_FOR_CI = 3
# Up to this many samples per side (and no ties) the Mann-Whitney p-value is exact: the
# normal approximation is poor for the handful of samples a short budget yields.
EXACT_MAX_SAMPLES = 20
ENVIRONMENT_KEYS = ("torch", "python", "cpu", "gpu", "threads", "device")


@attrs.frozen
class CellComparison:
    key: tuple[str, str, str, int]
    old: CellRecord | None
    new: CellRecord | None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    worse_percent: float | None = None
    significant: bool = False
    verdict: str = "unchanged"
    p_value: float | None = None


def _ratio_of_medians(old: Any, new: Any, axis: int = -1) -> Any:
    import numpy as np

    return np.median(new, axis=axis) / np.median(old, axis=axis)


def bootstrap_ratio_ci(
    old: Sequence[float], new: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of median(new*) / median(old*), by ``scipy.stats.bootstrap``
    resampling each side independently (seeded, so a comparison is reproducible)."""
    import numpy as np
    from scipy import stats

    result = stats.bootstrap(
        (np.asarray(old, dtype=float), np.asarray(new, dtype=float)),
        _ratio_of_medians,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        # Percentile (scipy's default is BCa), the interval compare has always reported;
        # a verdict never rests on it alone (the Mann-Whitney test must agree).
        method="percentile",
        vectorized=True,
        paired=False,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def mann_whitney_method(old: Sequence[float], new: Sequence[float]) -> str:
    """``"exact"`` when both sides have at most :data:`EXACT_MAX_SAMPLES` samples and no
    value repeats (the exact null distribution assumes no ties), else ``"auto"`` (scipy's
    own choice: the normal approximation with tie and continuity corrections at these sizes)."""
    pooled = [*old, *new]
    small = max(len(old), len(new)) <= EXACT_MAX_SAMPLES
    return "exact" if small and len(set(pooled)) == len(pooled) else "auto"


def mann_whitney_p(old: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (``scipy.stats.mannwhitneyu``): are
    samples of one side systematically larger? Exact at small n (see
    :func:`mann_whitney_method`)."""
    from scipy import stats

    if len(set(old)) == 1 and set(old) == set(new):
        return 1.0  # every sample equal: no evidence either way (scipy divides by a zero variance)
    result = stats.mannwhitneyu(
        list(old), list(new), alternative="two-sided", method=mann_whitney_method(old, new)
    )
    return float(result.pvalue)


def _worse_percent(ratio: float, higher_is_better: bool) -> float:
    # Positive = worse. For rates a ratio of 0.9 is 10 % worse; for times 1.1 is 10 % worse.
    return (1.0 - ratio) * 100.0 if higher_is_better else (ratio - 1.0) * 100.0


def compare_cells(old: CellRecord | None, new: CellRecord | None, *, threshold: float) -> CellComparison:
    key = (new or old).key  # type: ignore[union-attr]
    if old is None:
        return CellComparison(key, old, new, verdict="added")
    if new is None:
        return CellComparison(key, old, new, verdict="removed")
    if old.status == CellStatus.OK and new.status != CellStatus.OK:
        return CellComparison(key, old, new, verdict=f"now {new.status}", significant=new.status == CellStatus.FAILED)
    if old.status != CellStatus.OK or new.status != CellStatus.OK or old.value is None or new.value is None:
        return CellComparison(key, old, new, verdict=f"{old.status}->{new.status}")
    higher = bool(new.result.higher_is_better) if new.result is not None else True
    if old.value == 0:
        return CellComparison(key, old, new, verdict="old value 0")
    ratio = new.value / old.value
    worse = _worse_percent(ratio, higher)
    ci = None
    old_stats, new_stats = old.statistics, new.statistics
    if (
        old_stats is not None and new_stats is not None
        and len(old_stats.samples) >= MIN_SAMPLES_FOR_CI and len(new_stats.samples) >= MIN_SAMPLES_FOR_CI
        and min(old_stats.samples) > 0
    ):
        ci = bootstrap_ratio_ci(old_stats.samples, new_stats.samples)
    p_value = None
    if ci is not None:
        assert old_stats is not None and new_stats is not None
        p_value = mann_whitney_p(old_stats.samples, new_stats.samples)
        worse_side = ci[1] < 1.0 if higher else ci[0] > 1.0
        better_side = ci[0] > 1.0 if higher else ci[1] < 1.0
        # Both must agree: the percentile bootstrap of a median is optimistic with few samples.
        significant = (worse_side or better_side) and p_value < ALPHA
    else:
        worse_side, better_side = worse > 0, worse < 0
        significant = abs(worse) > threshold
    if significant and worse_side and worse > threshold:
        verdict = "REGRESSION"
    elif significant and better_side:
        verdict = "improved"
    elif significant and worse_side:
        verdict = "worse (within threshold)"
    else:
        verdict = "no significant change"
    return CellComparison(key, old, new, ratio, ci, worse, significant, verdict, p_value)


def compare_results(old: Results, new: Results, *, threshold: float) -> list[CellComparison]:
    olds = {c.key: c for c in old.cells}
    news = {c.key: c for c in new.cells}
    keys = list(dict.fromkeys([*olds, *news]))
    return [compare_cells(olds.get(k), news.get(k), threshold=threshold) for k in keys]


def is_regression(comparison: CellComparison) -> bool:
    return comparison.verdict == "REGRESSION" or (comparison.verdict == "now failed")


def environment_differences(old: Results, new: Results) -> list[str]:
    notes = []
    for key in ENVIRONMENT_KEYS:
        a, b = old.manifest.get(key), new.manifest.get(key)
        if a != b:
            notes.append(f"{key}: {a} -> {b}")
    return notes


def format_comparison(comparisons: Sequence[CellComparison]) -> str:
    rows: list[list[Any]] = []
    for c in comparisons:
        label, strategy, probe, batch = c.key
        unit = next((x.result.unit for x in (c.new, c.old) if x is not None and x.result is not None), "")
        rows.append([
            label, strategy, probe, batch,
            _value(c.old), _value(c.new), unit,
            f"{c.ratio:.3f}" if c.ratio is not None else "",
            f"[{c.ci[0]:.3f}, {c.ci[1]:.3f}]" if c.ci is not None else ("single value" if c.ratio is not None else ""),
            f"{c.worse_percent:+.1f}%" if c.worse_percent is not None else "",
            f"{c.p_value:.3f}" if c.p_value is not None else "",
            c.verdict,
        ])
    headers = ["model", "strategy", "probe", "batch", "old", "new", "unit", "new/old", "95% CI", "worse", "p", "verdict"]
    return format_table(rows, headers)


def _value(cell: CellRecord | None) -> str:
    if cell is None:
        return "-"
    if cell.status != CellStatus.OK or cell.value is None:
        return cell.status
    return format_number(cell.value)
