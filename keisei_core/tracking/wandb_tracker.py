"""Weights & Biases tracking of a benchmark run (offline by default: no account needed).

- run config: the resolved experiment config and the environment manifest;
- per cell, as it finishes: ``<probe>/<model>/<strategy>/b<batch>`` = the value (with its
  IQR ratio), so the run's history fills while the matrix runs;
- at the end: a ``cells`` table (every cell: status, value, quartiles, speedup against
  eager), the plots as images, the run summary (counts and status), and a
  ``benchmark-results`` artifact holding results.json, table.txt and the PNGs;
- with ``wandb.log_checkpoints = true``: one ``model`` artifact per (model, strategy)
  holding a keisei checkpoint, with the model name, its options, the strategy and the
  compile report as artifact metadata (the original Keisei parsed such a flag and never
  read it -- defect 6).

Offline runs are written under ``$WANDB_DIR`` when set, else under the results folder
(``<out>/wandb/offline-run-*``); ``wandb sync`` uploads them later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keisei_core.bench.results import CellRecord, Results
from keisei_core.config.experiment import WandbSettings
from keisei_core.errors import KeiseiError
from keisei_core.oneline import one_line

if TYPE_CHECKING:
    from keisei_core.compile.report import CompileReport

TABLE_COLUMNS: list[str | int] = [
    "model", "strategy", "probe", "batch_size", "status", "value", "unit", "median", "q1", "q3",
    "iqr_ratio", "n", "outliers", "speedup_vs_eager", "reason",
]


def artifact_name(*parts: str) -> str:
    """W&B artifact names allow letters, digits, '-', '_' and '.'; anything else becomes '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-") or "artifact"


def metric_key(cell: CellRecord) -> str:
    return f"{cell.probe}/{cell.model_label}/{cell.strategy}/b{cell.batch_size}"


def _run_config(results: Results) -> dict[str, Any]:
    config = {"experiment": results.run.get("config"), "manifest": results.manifest}
    # Shards of one matrix share a group; these say which share of it this run is.
    for key in ("shard", "config_fingerprint"):
        if results.run.get(key) is not None:
            config[key] = results.run[key]
    return config


class WandbTracker:
    """A benchmark-engine observer that mirrors the run into a W&B run."""

    def __init__(self, settings: WandbSettings, out_dir: Path, *, run_name: str) -> None:
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.run_name = run_name
        self.run: Any = None
        self.started = False
        self.run_dir: str | None = None
        self.checkpoints: list[Path] = []

    # -- observer interface --------------------------------------------------------------
    def on_start(self, results: Results) -> None:
        from keisei_core.optional import require

        wandb = require("wandb", "W&B tracking (--wandb disabled turns it off)")
        directory = os.environ.get("WANDB_DIR") or str(self.out_dir)
        Path(directory).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=self.settings.project,
                entity=self.settings.entity,
                group=self.settings.group,
                name=self.run_name,
                job_type="benchmark",
                mode=self.settings.mode,
                dir=directory,
                config=_run_config(results),
                settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False),
                reinit="finish_previous",
            )
        except Exception as exc:
            raise KeiseiError(
                f"W&B could not start a {self.settings.mode} run ({one_line(exc, limit=200, with_type=False)}); "
                "use --wandb offline, or --wandb disabled"
            ) from None
        self.started = True
        self.run_dir = str(Path(self.run.dir).parent) if getattr(self.run, "dir", None) else None

    def on_cell(self, cell: CellRecord, results: Results) -> None:
        if self.run is None:
            return
        data: dict[str, Any] = {"cells_done": len(results.cells)}
        if cell.status == "ok" and cell.value is not None:
            data[metric_key(cell)] = cell.value
            if cell.statistics is not None:
                data[metric_key(cell) + "/iqr_ratio"] = cell.statistics.iqr_ratio
        else:
            data[metric_key(cell) + "/" + cell.status] = 1
        self.run.log(data)

    def on_group(self, label: str, strategy: str, model: Any, report: CompileReport | None, training: bool) -> None:
        """Save and log the (model, strategy) checkpoint when ``log_checkpoints`` is on."""
        if self.run is None or training or not self.settings.log_checkpoints:
            return
        import wandb

        from keisei_core.checkpoints.store import save_checkpoint
        from keisei_core.compile.report import report_data

        path = self.out_dir / "checkpoints" / f"{artifact_name(label, strategy)}.pt"
        save_checkpoint(path, model, strategy=strategy, compile_report=report, metadata={"label": label})
        name = getattr(model, "keisei_model_name", None) or label
        options = getattr(model, "keisei_model_options", None) or {}
        artifact = wandb.Artifact(
            artifact_name(label, strategy, "checkpoint"),
            type="model",
            description=f"keisei checkpoint of {label} ({strategy})",
            metadata={"model_name": name, "model_options": options, "strategy": strategy,
                      "compile_report": report_data(report) if report is not None else None},
        )
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)
        self.checkpoints.append(path)

    # -- end of run ----------------------------------------------------------------------
    def finish(self, results: Results, *, table: str, plots: Sequence[Path]) -> None:
        if self.run is None:
            return
        import wandb

        from keisei_core.bench.table import speedup_against_eager

        rows = []
        for cell in results.cells:
            stats = cell.statistics
            eager = results.find(cell.model_label, results.baseline, cell.probe, cell.batch_size)
            ratio = speedup_against_eager(cell, eager) if cell.strategy != results.baseline else None
            rows.append([
                cell.model_label, cell.strategy, cell.probe, cell.batch_size, cell.status, cell.value,
                cell.result.unit if cell.result else None,
                stats.median if stats else None, stats.q1 if stats else None, stats.q3 if stats else None,
                stats.iqr_ratio if stats else None, stats.n if stats else None,
                stats.outliers if stats else None, ratio, cell.reason,
            ])
        log: dict[str, Any] = {"cells": wandb.Table(columns=TABLE_COLUMNS, data=rows)}
        for path in plots:
            log[f"plots/{path.stem}"] = wandb.Image(str(path))
        self.run.log(log)
        counts = {s: sum(1 for c in results.cells if c.status == s) for s in ("ok", "failed", "skipped")}
        self.run.summary.update({"status": results.run.get("status"), **{f"cells_{k}": v for k, v in counts.items()}})
        artifact = wandb.Artifact(
            artifact_name(self.run_name, "results"), type="benchmark-results",
            metadata={"status": results.run.get("status"), **counts},
        )
        if results.path is not None and results.path.exists():
            artifact.add_file(str(results.path))
        table_file = self.out_dir / "table.txt"
        if not table_file.exists():
            table_file.write_text(table + "\n", encoding="utf-8")
        artifact.add_file(str(table_file))
        for path in plots:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)
        self.run.finish(exit_code=0 if results.run.get("status") == "complete" else 1)
        self.run = None

    def abort(self) -> None:
        """End a started run as failed (the engine raised before the run could finish)."""
        if self.run is not None:
            self.run.finish(exit_code=1)
            self.run = None
