"""The ``peers`` probe's rows as a markdown table (what docs/compilation.md shows).

``python -m keisei_plugin_openvino.peer_table RESULTS.json`` prints one table per model:
batch, contender, kind, precision, ms (median, with the interquartile range), x eager
(median of per-round ratios), achieved GFLOP/s and % of the measured peak of that
precision, and the largest difference from eager's outputs. Rows that did not run show
their status and reason. No torch, no openvino: it reads the results file only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from keisei_core.plugin import CellRecord, KeiseiError, format_number, load_results

HEADER = ("batch", "contender", "kind", "precision", "ms (IQR)", "x eager", "GFLOP/s", "% of peak", "max abs diff")


def _number(value: Any, suffix: str = "") -> str:
    return f"{format_number(float(value))}{suffix}" if isinstance(value, int | float) else "-"


def _row(batch: int, row: dict[str, Any]) -> list[str]:
    name = f"`{row['name']}`"
    if row.get("status") != "ok" or "ms" not in row:
        reason = str(row.get("reason") or row.get("status"))
        return [str(batch), name, row["kind"], row["precision"], f"{row.get('status')}: {reason}", "", "", "", ""]
    ms = f"{_number(row['ms'])} ({_number(row.get('ms_q1'))}-{_number(row.get('ms_q3'))})"
    diff = row.get("max_abs_diff")
    return [
        str(batch), name, row["kind"], row["precision"], ms, _number(row.get("x_eager"), "x"),
        _number(row.get("gflops")), _number(row.get("pct_of_peak"), " %"),
        f"{diff:.1e}" if isinstance(diff, int | float) else "-",
    ]


def markdown_rows(cells: Iterable[CellRecord]) -> list[list[str]]:
    rows: list[list[str]] = []
    for cell in sorted(cells, key=lambda c: c.batch_size):
        if cell.probe != "peers" or cell.status != "ok" or cell.result is None:
            continue
        rows.extend(_row(cell.batch_size, row) for row in cell.result.extra.get("rows", []))
    return rows


def format_markdown(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---", "---", "---", "---", "---:", "---:", "---:", "---:", "---:"]) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def peer_tables(path: str | Path) -> str:
    """Markdown for every model with ``peers`` cells in the results file at ``path``."""
    results = load_results(path)
    cells = [c for c in results.cells if c.probe == "peers"]
    if not cells:
        raise KeiseiError(f"{path}: no 'peers' cells (run a config with probes = [\"peers\"])")
    out: list[str] = []
    for label in dict.fromkeys(c.model_label for c in cells):
        mine = [c for c in cells if c.model_label == label]
        out.append(f"**{label}**\n\n{format_markdown(markdown_rows(mine))}")
        failed = [c for c in mine if c.status != "ok"]
        out.extend(f"- batch {c.batch_size}: {c.status}: {c.reason}" for c in failed)
    return "\n\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m keisei_plugin_openvino.peer_table RESULTS.json", file=sys.stderr)
        return 2
    try:
        print(peer_tables(args[0]))
    except KeiseiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
