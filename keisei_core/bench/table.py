"""The terminal summary of a results document.

One row per (model, strategy, batch size); one column per probe holding the median and
the IQR as a percentage of it (``1.23 ±4%``), and, for timed probes, a ``×eager`` column:
the speedup against the eager cell of the same model, probe and batch size (ratio of
medians, oriented so that > 1 is better). Those ratios come from cells measured at
different times; the ``speedup`` probe measures the same thing interleaved.
Failed and skipped cells show their status, with the reasons listed below the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from keisei_core.bench.results import CellRecord, Results, unique_labels
from keisei_core.statuses import CellStatus
from keisei_core.text_table import format_table

NOISY_MARK = "!"


def format_number(value: float) -> str:
    """Three significant digits, thousands separated; no exponent for ordinary sizes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 1e12 or magnitude < 1e-3:
        return f"{value:.3g}"
    if magnitude >= 100:
        return f"{value:,.0f}"
    digits = 2 - math.floor(math.log10(magnitude))
    return f"{value:.{digits}f}"


def _cell_text(cell: CellRecord | None) -> str:
    if cell is None:
        return "-"
    if cell.status != CellStatus.OK or cell.result is None or cell.value is None:
        return cell.status
    stats = cell.statistics
    text = format_number(cell.value)
    if stats is not None and stats.median > 0:
        text += f" ±{stats.iqr_ratio:.0%}"
        if stats.noisy:
            text += NOISY_MARK
    return text


def speedup_against_eager(cell: CellRecord | None, eager: CellRecord | None) -> float | None:
    """Ratio of medians oriented so > 1 means the strategy is better than eager."""
    if cell is None or eager is None or cell.value is None or eager.value is None:
        return None
    if cell.result is None or cell.value <= 0 or eager.value <= 0:
        return None
    if cell.result.higher_is_better:
        return cell.value / eager.value
    return eager.value / cell.value


def _timed_probes(results: Results, probes: Sequence[str]) -> list[str]:
    timed = {c.probe for c in results.ok_cells() if c.statistics is not None and c.probe != "speedup"}
    return [p for p in probes if p in timed]


def _ordered(values: Sequence[object]) -> list[object]:
    seen: dict[object, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


def format_results_table(results: Results) -> str:
    cells = results.cells
    if not cells:
        return "(no finished cells)"
    probes = [str(p) for p in _ordered([c.probe for c in cells])]
    strategies = [str(s) for s in _ordered([c.strategy for c in cells])]
    batches = sorted({c.batch_size for c in cells})
    units = {c.probe: c.result.unit for c in results.ok_cells() if c.result is not None}
    base = results.baseline
    with_speedup = set(_timed_probes(results, probes)) if base in strategies and len(strategies) > 1 else set()
    headers = ["model", "strategy", "batch"]
    for probe in probes:
        unit = units.get(probe)
        headers.append(f"{probe} [{unit}]" if unit else probe)
        if probe in with_speedup:
            headers.append(f"×{base}")
    rows = []
    for label in unique_labels(cells):
        for strategy in strategies:
            for batch in batches:
                found = {p: results.find(label, strategy, p, batch) for p in probes}
                if not any(found.values()):
                    continue
                row = [label, strategy, str(batch)]
                for probe in probes:
                    row.append(_cell_text(found[probe]))
                    if probe in with_speedup:
                        ratio = speedup_against_eager(found[probe], results.find(label, base, probe, batch))
                        row.append("" if strategy == base or ratio is None else f"{ratio:.2f}")
                rows.append(row)
    lines = [format_table(rows, headers)]
    lines.extend(_footnotes(results))
    return "\n".join(lines)


def _footnotes(results: Results) -> list[str]:
    notes: list[str] = []
    if any(c.statistics is not None and c.statistics.noisy for c in results.ok_cells()):
        notes.append(f"{NOISY_MARK} noisy: IQR above 10% of the median; differences this small are not reliable")
    reasons: dict[str, list[str]] = {}
    for cell in results.cells:
        if cell.status in (CellStatus.FAILED, CellStatus.SKIPPED) and cell.reason:
            where = f"{cell.model_label}/{cell.strategy}/{cell.probe}"
            reasons.setdefault(f"{cell.status}: {cell.reason}", [])
            if where not in reasons[f"{cell.status}: {cell.reason}"]:
                reasons[f"{cell.status}: {cell.reason}"].append(where)
    for reason, wheres in reasons.items():
        shown = ", ".join(wheres[:4]) + (f" (+{len(wheres) - 4} more)" if len(wheres) > 4 else "")
        notes.append(f"{reason}  [{shown}]")
    return notes


def format_header(results: Results) -> str:
    m = results.manifest
    run = results.run
    cpu = m.get("gpu", {}).get("name") if m.get("gpu") else m.get("cpu")
    text = (
        f"run {run.get('name')} ({run.get('status')}): {m.get('device')} {cpu}, "
        f"{m.get('threads')} threads, torch {m.get('torch')}, python {m.get('python')}"
    )
    lines = [text, *auto_choices(results)]
    busy = busy_warning(m)
    if busy:
        lines.append(busy)
    return "\n".join(lines)


def auto_choices(results: Results) -> list[str]:
    """One line per model benchmarked with ``auto``: what it chose per batch size, and how fast."""
    lines = []
    seen: set[str] = set()
    for cell in results.cells:
        tuning = cell.compile_report.auto if cell.compile_report is not None else None
        if tuning is None or not tuning.choices or cell.strategy != "auto" or cell.model_label in seen:
            continue
        seen.add(cell.model_label)
        picked = ", ".join(f"batch {c.batch_size}: {c.strategy} ({c.speedup:.2f}x eager)" for c in tuning.choices)
        reused = " (cached decision)" if tuning.reused else ""
        lines.append(f"fastest validated for {cell.model_label} (auto){reused}: {picked}")
    return lines


def busy_warning(manifest: dict[str, object]) -> str | None:
    """A warning when other processes competed for the cores while the run measured.

    The load average read at the end counts the run's own threads (a 2-thread run on 2
    cores reads about 2 by itself), so they are taken off that reading; the start reading
    is other processes only (it decays over about a minute, so a job that just ended still
    shows). Busy means the others' load plus the run's threads exceeded the cores by more
    than half a core."""
    cores = manifest.get("cpu_count")
    threads = manifest.get("threads")
    own = threads if isinstance(threads, int) and threads > 0 else 0
    start, end = (manifest.get(key) for key in ("load_average_at_start", "load_average_at_end"))
    others = [value[0] for value in (start,) if isinstance(value, list) and value]
    others += [max(value[0] - own, 0.0) for value in (end,) if isinstance(value, list) and value]
    if not isinstance(cores, int) or not others or max(others) + own <= cores + 0.5:
        return None
    return (
        f"warning: the machine was busy (load average {max(others):.1f} of other processes besides "
        f"this run's {own} threads, on {cores} cores); timings include contention from other processes"
    )
