"""The results file: one versioned JSON document, rewritten atomically after every cell.

Schema (``schema_version`` 1)::

    {
      "schema": "keisei.bench.results",
      "schema_version": 1,
      "run": {"name", "status": "running" | "complete" | "interrupted", "started",
              "finished", "config_path", "config": {... resolved experiment ...},
              "signal": "SIGINT" | "SIGTERM" (interrupted runs), "pid", "host",
              "baseline": the baseline strategy's name (StrategySpec.baseline)},
      "notes": [...]   # only when a value had to be changed to be written, see below
      "manifest": {... environment: versions, CPU/GPU, threads, plugins, git ...},
      "calibration": {... per-run facts shared by cells, e.g. "peak_flops" ...},
      "cells": [
        {"model", "model_label", "model_options", "strategy", "probe", "batch_size",
         "device", "dtype", "status": "ok" | "failed" | "skipped", "reason",
         "metric", "unit", "value", "higher_is_better",
         "statistics": {median, q1, q3, p10, p90, mean, std, n, outliers_low/high,
                        minimum, maximum, iqr, iqr_ratio, noisy, warmup_samples,
                        calls_per_sample, stop_reason, unit, samples: [...]} | null,
         "extra": {...}, "compile_report": {...} | null,
         "speed_check": {batch_size, speedup, verdict, eager_ms, compiled_ms, ratio_q1,
                         ratio_q3, ...} | null  (compile_model's speed check at the
                         cell's batch size), "warnings": [...], "duration_seconds"}
      ]
    }

Every write goes to a temporary file in the same folder followed by ``os.replace``, so a
reader (or a crash, or Ctrl-C) never sees a half-written file: after each cell the file
on disk holds every finished cell.

The writer never fails on a value: a NaN or infinite number anywhere in the document
(strict JSON has neither) is written as ``null`` and the document's ``notes`` list says
where and what it was.

A run killed outright (SIGKILL, power loss) leaves status ``running``. :func:`load_results`
reads such a file as ``incomplete`` unless the process that wrote it (``pid`` on ``host``)
is still alive, so ``keisei compare``, ``keisei merge`` and the table say so.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import BaseValidationError

from keisei_core import serialization
from keisei_core.atomic_files import write_json_atomic
from keisei_core.bench.probe_api import ProbeResult, probe_result_converter
from keisei_core.compile.report import CompileReport, report_from_data
from keisei_core.errors import KeiseiError
from keisei_core.json_data import json_safe
from keisei_core.stats import Statistics

SCHEMA = "keisei.bench.results"
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped")
RUN_INCOMPLETE = "incomplete"
# Non-finite numbers listed in "notes" before the rest are only counted.
SHOWN_NOTES = 20


def _writer_alive(run: dict[str, Any]) -> bool:
    pid, host = run.get("pid"), run.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return isinstance(pid, int) and pid > 0
    return True


class ResultsError(KeiseiError):
    """A results file that is missing, not JSON, or not of a known schema version."""


@attrs.define
class CellRecord:
    """One measured (or failed, or skipped) cell."""

    model: str
    model_label: str
    model_options: dict[str, Any]
    strategy: str
    probe: str
    batch_size: int
    device: str
    dtype: str
    status: str = attrs.field(validator=attrs.validators.in_(STATUSES))
    reason: str | None = None
    result: ProbeResult | None = None
    # Typed in memory; unstructured by to_dict (Results.save then writes non-finite
    # numbers as null) and structured again by from_dict.
    compile_report: CompileReport | None = None
    speed_check: dict[str, Any] | None = None
    warnings: list[str] = attrs.field(factory=list)
    duration_seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, int]:
        """Identifies the cell across runs (for compare): label, strategy, probe, batch."""
        return (self.model_label, self.strategy, self.probe, self.batch_size)

    @property
    def value(self) -> float | None:
        return self.result.value if self.result is not None else None

    @property
    def statistics(self) -> Statistics | None:
        return self.result.statistics if self.result is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The cell as the results file holds it (see the module docstring): the project
        converter's unstructuring, the result's fields flattened into the cell."""
        data: dict[str, Any] = _converter().unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellRecord:
        """A cell back from :meth:`to_dict`'s data, or from an older file (keys it lacks
        take their old defaults); a result only for an ``ok`` cell with a metric."""
        return _converter().structure(data, cls)


def _report(data: Any, cell: dict[str, Any]) -> CompileReport | None:
    if data is None:
        return None
    where = f"cell {cell.get('model_label') or cell.get('model')}/{cell.get('strategy')}/b{cell.get('batch_size')}"
    try:
        return report_from_data(data, f"{where}: compile_report")
    except KeiseiError as exc:
        raise ResultsError(str(exc)) from None


@attrs.define
class Results:
    """An in-memory results document (see the module docstring for the schema)."""

    run: dict[str, Any]
    manifest: dict[str, Any]
    calibration: dict[str, Any] = attrs.field(factory=dict)
    cells: list[CellRecord] = attrs.field(factory=list)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The document as the results file holds it (before :meth:`save` makes it strict JSON)."""
        data: dict[str, Any] = _converter().unstructure(self)
        return data

    def to_pandas(self) -> Any:
        """The cells as a ``pandas.DataFrame``, one row per cell: the cell's key and status,
        the headline ``value`` with its ``unit``, the main statistics (``median``, ``q1``,
        ``q3``, ``p10``, ``p90``, ``iqr_ratio``, ``n``; empty for single-shot or failed
        cells) and ``duration_seconds``. Needs pandas (``pip install 'keisei-core[pandas]'``)."""
        from keisei_core.optional import require

        pandas = require("pandas", "Results.to_pandas()")
        stat_names = ("median", "q1", "q3", "p10", "p90", "iqr_ratio", "n")
        rows = []
        for cell in self.cells:
            stats = cell.result.statistics if cell.result is not None else None
            rows.append({
                "model": cell.model, "model_label": cell.model_label, "strategy": cell.strategy,
                "probe": cell.probe, "batch_size": cell.batch_size, "device": cell.device,
                "dtype": cell.dtype, "status": str(cell.status), "reason": cell.reason,
                "metric": cell.result.metric if cell.result is not None else None,
                "unit": cell.result.unit if cell.result is not None else None,
                "value": cell.value,
                **{name: getattr(stats, name) if stats is not None else None for name in stat_names},
                "duration_seconds": cell.duration_seconds,
            })
        columns = ["model", "model_label", "strategy", "probe", "batch_size", "device", "dtype",
                   "status", "reason", "metric", "unit", "value", *stat_names, "duration_seconds"]
        return pandas.DataFrame(rows, columns=columns)

    def ok_cells(self) -> list[CellRecord]:
        return [c for c in self.cells if c.status == "ok"]

    @property
    def baseline(self) -> str:
        """The strategy the run compares against: the one registered with
        ``baseline=True`` when the run was made (files written before the role existed
        name none; their baseline was always eager)."""
        return str(self.run.get("baseline") or "eager")

    def find(self, label: str, strategy: str, probe: str, batch_size: int) -> CellRecord | None:
        key = (label, strategy, probe, batch_size)
        return next((c for c in self.cells if c.key == key), None)

    def append(self, cell: CellRecord) -> None:
        """Add a finished cell and, when the document has a path, write it at once."""
        self.cells.append(cell)
        if self.path is not None:
            self.save()

    def save(self, path: Path | None = None) -> Path:
        target = path or self.path
        if target is None:
            raise ValueError("results have no path to save to")
        replaced: list[str] = []
        document = json_safe(self.to_dict(), non_finite="null", replaced=replaced)
        if replaced:
            note = "; ".join(replaced[:SHOWN_NOTES])
            more = f" (and {len(replaced) - SHOWN_NOTES} more)" if len(replaced) > SHOWN_NOTES else ""
            document["notes"] = [f"non-finite numbers (JSON has none): {note}{more}"]
        write_json_atomic(target, document)
        return target


# -- the file boundary --------------------------------------------------------------------
# Cells and documents are unstructured (and cells structured) by the project's one cattrs
# converter; these hooks (registered on first use) give the file's layout: the schema
# header before the document's fields, and each cell's result flattened into the cell.

# A cell's result fields, in the order the file has them (null, and an empty extra, when
# the cell has no result).
_RESULT_KEYS = ("metric", "unit", "value", "higher_is_better", "statistics", "extra")
# What a cell without these keys (or with them null) means: files written by older versions.
_CELL_DEFAULTS: dict[str, Any] = {
    "model_options": {}, "device": "cpu", "dtype": "float32", "warnings": [], "duration_seconds": 0.0,
}


def _as_is(value: Any) -> Any:
    return value


def _given(value: Any, _type: Any) -> Any:
    return value  # already structured by structure_cell


def _flat_result(result: dict[str, Any] | None) -> dict[str, Any]:
    if result is None:
        return {**dict.fromkeys(_RESULT_KEYS), "extra": {}}
    return {key: result[key] for key in _RESULT_KEYS}


def _register_hooks(converter: cattrs.Converter) -> None:
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    # Free-form data (run, manifest, options, extra facts) is written as given, shallowly
    # copied: Results.save's json_safe makes it strict JSON.
    unstructure_cell_fields = make_dict_unstructure_fn(
        CellRecord, converter, model_options=override(unstruct_hook=dict), speed_check=override(unstruct_hook=_as_is),
        compile_report=override(unstruct_hook=converter.unstructure),
    )
    # result and compile_report are structured by structure_cell (they need the whole cell).
    structure_cell_fields = make_dict_structure_fn(
        CellRecord, converter, _cattrs_forbid_extra_keys=False,
        result=override(struct_hook=_given), compile_report=override(struct_hook=_given),
    )

    def unstructure_cell(cell: CellRecord) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in unstructure_cell_fields(cell).items():
            if key == "result":
                data.update(_flat_result(value))
            else:
                data[key] = value
        return data

    def structure_cell(data: Any, cls: type[CellRecord]) -> CellRecord:
        fields = serialization.with_defaults(data, _CELL_DEFAULTS)
        if not fields.get("model_label") and "model" in fields:
            fields["model_label"] = fields["model"]
        ok = fields.get("status") == "ok" and fields.get("metric") is not None
        fields["result"] = converter.structure(fields, ProbeResult) if ok else None
        fields["compile_report"] = _report(fields.get("compile_report"), fields)
        return structure_cell_fields(fields, cls)

    converter.register_unstructure_hook(CellRecord, unstructure_cell)
    converter.register_structure_hook(CellRecord, structure_cell)

    # Made after the cells' hooks are registered: it unstructures its cells with them.
    unstructure_document = make_dict_unstructure_fn(
        Results, converter, run=override(unstruct_hook=dict), manifest=override(unstruct_hook=dict),
        calibration=override(unstruct_hook=dict), path=override(omit=True),
    )

    def unstructure_results(results: Results) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **unstructure_document(results)}

    converter.register_unstructure_hook(Results, unstructure_results)


@functools.cache
def _converter() -> cattrs.Converter:
    """The project's converter with the hooks of cells and documents (and of the probe
    results and statistics they hold) registered."""
    converter = probe_result_converter()
    _register_hooks(converter)
    return converter


def load_results(path: str | Path) -> Results:
    """Read a results file; anything that is not one of ours is one clear error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a directory; give the results.json inside it") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not a JSON results file ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not a keisei results file (no \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema version {version!r} is not supported (this keisei reads {SCHEMA_VERSION})"
        )
    cells = []
    for index, cell in enumerate(data.get("cells", [])):
        try:
            cells.append(CellRecord.from_dict(cell))
        except (KeyError, TypeError, ValueError, BaseValidationError) as exc:
            problems = serialization.problems(exc, f"cells[{index}]")
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise ResultsError(f"{path}: malformed cell entry ({problems[0]}{more})") from None
    run = dict(data.get("run") or {})
    if run.get("status") == "running" and not _writer_alive(run):
        # Killed outright (SIGKILL, power loss): the cells on disk are what finished.
        run["status"] = RUN_INCOMPLETE
        run["status_note"] = "the file says 'running' but its process is gone (killed before it finished)"
    return Results(
        run=run,
        manifest=dict(data.get("manifest") or {}),
        calibration=dict(data.get("calibration") or {}),
        cells=cells,
        path=path,
    )


def unique_labels(cells: Iterable[CellRecord]) -> list[str]:
    """Model labels in first-seen order."""
    seen: dict[str, None] = {}
    for cell in cells:
        seen.setdefault(cell.model_label, None)
    return list(seen)
