"""PNG plots of a results document (matplotlib, Agg backend, imported only here).

- ``throughput.png``: samples/s against batch size, one line per strategy, one panel per
  (model, rate probe); error bars span the inter-quartile range.
- ``speedup.png``: speedup against eager per batch size, grouped bars per strategy, one
  panel per (model, rate probe) -- the ratio of the two cells' medians -- and per (model,
  ratio probe such as ``speedup``, unit ``x``) -- the probe's own paired ratio, with its
  inter-quartile range; the dashed line at 1 is parity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keisei_core.bench.results import CellRecord, Results, unique_labels
from keisei_core.bench.table import speedup_against_eager
from keisei_core.statuses import CellStatus

RATE_UNIT = "samples/s"
RATIO_UNIT = "x"  # probes that measure a strategy against the baseline themselves (speedup)


def _probes_in(results: Results, unit: str) -> list[str]:
    probes: dict[str, None] = {}
    for cell in results.ok_cells():
        if cell.result is not None and cell.result.unit == unit:
            probes.setdefault(cell.probe, None)
    return list(probes)


def _rate_probes(results: Results) -> list[str]:
    return _probes_in(results, RATE_UNIT)


def _strategies(results: Results) -> list[str]:
    seen: dict[str, None] = {}
    for cell in results.cells:
        seen.setdefault(cell.strategy, None)
    return list(seen)


def _panels(results: Results) -> list[tuple[str, str]]:
    return [(label, probe) for label in unique_labels(results.cells) for probe in _rate_probes(results)]


def _grid(count: int) -> tuple[Any, list[Any]]:
    from keisei_core.optional import require

    matplotlib = require("matplotlib", "keisei bench's plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = min(count, 2)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.0 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _ok(cell: CellRecord | None) -> bool:
    return cell is not None and cell.status == CellStatus.OK and cell.value is not None


def plot_throughput(results: Results, path: Path) -> Path | None:
    panels = _panels(results)
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    batches = sorted({c.batch_size for c in results.cells})
    for ax, (label, probe) in zip(axes, panels, strict=True):
        for strategy in _strategies(results):
            points = [(b, results.find(label, strategy, probe, b)) for b in batches]
            points = [(b, c) for b, c in points if _ok(c)]
            if not points:
                continue
            xs = [b for b, _ in points]
            ys = [c.value for _, c in points if c is not None]
            low = [max(0.0, (c.value or 0) - c.statistics.q1) if c and c.statistics else 0.0 for _, c in points]
            high = [max(0.0, c.statistics.q3 - (c.value or 0)) if c and c.statistics else 0.0 for _, c in points]
            ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=strategy)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{probe} [{RATE_UNIT}]")
        ax.set_title(f"{label}: {probe}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, results, path)


def _ratio_of(results: Results, label: str, strategy: str, probe: str, batch: int,
              ratio_probe: bool) -> tuple[float, float, float] | None:
    """(ratio, below, above) for one bar: a ratio probe's own median and IQR, or the ratio
    of a rate probe's medians (no spread)."""
    cell = results.find(label, strategy, probe, batch)
    if not ratio_probe:
        ratio = speedup_against_eager(cell, results.find(label, results.baseline, probe, batch))
        return None if ratio is None else (ratio, 0.0, 0.0)
    if cell is None or cell.status != CellStatus.OK or cell.value is None:
        return None
    stats = cell.statistics
    if stats is None:
        return cell.value, 0.0, 0.0
    return cell.value, max(cell.value - stats.q1, 0.0), max(stats.q3 - cell.value, 0.0)


def plot_speedup(results: Results, path: Path) -> Path | None:
    base = results.baseline
    strategies = [s for s in _strategies(results) if s != base]
    if base not in _strategies(results) or not strategies:
        return None
    labels = unique_labels(results.cells)
    panels = [(label, probe, False) for label, probe in _panels(results)]
    panels += [(label, probe, True) for label in labels for probe in _probes_in(results, RATIO_UNIT)]
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    batches = sorted({c.batch_size for c in results.cells})
    width = 0.8 / len(strategies)
    for ax, (label, probe, ratio_probe) in zip(axes, panels, strict=True):
        for index, strategy in enumerate(strategies):
            xs, ys, below, above = [], [], [], []
            for position, batch in enumerate(batches):
                bar = _ratio_of(results, label, strategy, probe, batch, ratio_probe)
                if bar is not None:
                    xs.append(position + (index - (len(strategies) - 1) / 2) * width)
                    ys.append(bar[0])
                    below.append(bar[1])
                    above.append(bar[2])
            if not xs:
                continue
            spread = [below, above] if ratio_probe else None
            ax.bar(xs, ys, width=width, label=strategy, yerr=spread, capsize=2 if ratio_probe else 0)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(batches)))
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("speedup against eager (×)")
        ax.set_title(f"{label}: {probe}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, results, path)


def _save(fig: Any, results: Results, path: Path) -> Path:
    import matplotlib.pyplot as plt

    m = results.manifest
    fig.suptitle(
        f"{results.run.get('name')} - {m.get('device')} {m.get('cpu') if m.get('device') == 'cpu' else ''}"
        f" ({m.get('threads')} threads), torch {m.get('torch')}",
        fontsize="small",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: Results, out_dir: Path) -> list[Path]:
    """Every plot that the results can support, as PNG files in ``out_dir``."""
    written = [
        plot_throughput(results, out_dir / "throughput.png"),
        plot_speedup(results, out_dir / "speedup.png"),
    ]
    return [p for p in written if p is not None]
