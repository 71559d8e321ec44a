"""``keisei merge``: the shards of one matrix into one results file.

Shards merge only when they are the same experiment in the same environment:
- the same config fingerprint (see :mod:`keisei_core.bench.shards`);
- the same environment: keisei, Python, torch (and its CUDA), the device kind and its
  hardware (GPU model on CUDA, CPU model and thread count on CPU), the loaded plugins
  with their versions. Host names, load averages and start times may differ: that is
  what sharding is for. Different git commits are reported as a warning (a checkout
  that moved between array tasks), not refused: the versions above are what decides;
- one file per shard index, all of the same N, none missing (``allow_missing`` merges
  what is there and marks the run ``partial``);
- each file holds exactly the cells its shard owns, recomputed from the stored config:
  a cell that belongs elsewhere, or a cell missing from an interrupted shard, is
  reported (the latter is allowed with ``allow_missing``).
Every refusal is one :class:`MergeError` line naming the files and what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keisei_core.bench.results import CellRecord, Results, load_results
from keisei_core.bench.shards import CellId, Shard, assign_shards, describe_shards, matrix_cells
from keisei_core.errors import KeiseiError


class MergeError(KeiseiError):
    """Shards that cannot be merged into one results file."""


def results_path(given: str | Path) -> Path:
    """A results file, or a run folder holding ``results.json``."""
    path = Path(given)
    return path / "results.json" if path.is_dir() else path


def environment_signature(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must agree between shards for their numbers to belong in one table."""
    device = manifest.get("device")
    gpu = manifest.get("gpu") or {}
    signature: dict[str, Any] = {
        "keisei_core": manifest.get("keisei_core"),
        "python": manifest.get("python"),
        "torch": manifest.get("torch"),
        "torch_cuda": manifest.get("torch_cuda"),
        "device": device,
    }
    if device == "cuda":
        signature["gpu"] = gpu.get("name") if isinstance(gpu, dict) else gpu
    else:
        signature["cpu"] = manifest.get("cpu")
        signature["threads"] = manifest.get("threads")
    signature["plugins"] = sorted(
        f"{p.get('name')}=={p.get('version')}"
        for p in manifest.get("plugins") or []
        if isinstance(p, dict) and p.get("status") == "loaded"
    )
    return signature


def environment_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    left, right = environment_signature(a), environment_signature(b)
    return [f"{key}: {left[key]} vs {right.get(key)}" for key in left if left[key] != right.get(key)]


def commit_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    commit_a = (a.get("git") or {}).get("commit")
    commit_b = (b.get("git") or {}).get("commit")
    if commit_a and commit_b and commit_a != commit_b:
        return f"git commit {commit_a[:12]} vs {commit_b[:12]}"
    return None


def _shard_of(results: Results, path: Path) -> Shard:
    data = results.run.get("shard")
    if not isinstance(data, dict):
        raise MergeError(f"{path}: not a shard (run without --shard I/N); nothing to merge it with")
    try:
        return Shard(int(data["index"]), int(data["count"]))
    except (KeyError, TypeError, ValueError, KeiseiError):
        raise MergeError(f"{path}: malformed shard record {data!r}") from None


def _stored_config(results: Results, path: Path) -> Any:
    from keisei_core.config.converter import structure
    from keisei_core.config.experiment import ExperimentConfig

    data = results.run.get("config")
    if not isinstance(data, dict):
        raise MergeError(f"{path}: holds no resolved config; cannot check which cells it owns")
    return structure(data, ExperimentConfig, f"{path}: run.config")


def merge_results(paths: Sequence[str | Path], *, allow_missing: bool = False) -> Results:
    """Check and combine shard results files; the merged document has no path yet."""
    if not paths:
        raise MergeError("give the shard results files to merge")
    files = [results_path(p) for p in paths]
    loaded = [(path, load_results(path)) for path in files]
    first_path, first = loaded[0]

    fingerprint = first.run.get("config_fingerprint")
    warnings: list[str] = []
    for path, results in loaded:
        if not results.run.get("config_fingerprint"):
            raise MergeError(f"{path}: records no config fingerprint; rerun it with keisei bench --shard I/N")
        if results.run["config_fingerprint"] != fingerprint:
            raise MergeError(
                f"{first_path} and {path} are shards of different configs "
                f"(fingerprints {fingerprint} and {results.run['config_fingerprint']})"
            )
        differences = environment_differences(first.manifest, results.manifest)
        if differences:
            raise MergeError(f"{first_path} and {path} ran in different environments ({'; '.join(differences)})")
        commits = commit_difference(first.manifest, results.manifest)
        if commits:
            warnings.append(f"{first_path} and {path} ran from different checkouts ({commits})")

    shards = [(path, results, _shard_of(results, path)) for path, results in loaded]
    count = shards[0][2].count
    seen: dict[int, Path] = {}
    for path, _results, shard in shards:
        if shard.count != count:
            raise MergeError(f"{first_path} is one of {count} shards but {path} is shard {shard.label}")
        if shard.index in seen:
            raise MergeError(f"shard {shard.label} given twice: {seen[shard.index]} and {path}")
        seen[shard.index] = path
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing and not allow_missing:
        raise MergeError(
            f"missing shard(s) {describe_shards(missing, count)}; "
            "merge all of them (or pass --allow-missing for a partial file)"
        )

    config = _stored_config(first, first_path)
    everything = matrix_cells(config)
    owner = assign_shards(everything, count)
    cells: dict[CellId, CellRecord] = {}
    incomplete: list[str] = []
    for path, results, shard in shards:
        owned = {cell for cell in everything if owner[cell] == shard.index}
        for cell in results.cells:
            if cell.key not in owned:
                raise MergeError(f"{path}: cell {cell.key} is not one shard {shard.label} of this config owns")
            if cell.key in cells:
                raise MergeError(f"{path}: cell {cell.key} appears twice")
            cells[cell.key] = cell
        absent = owned - {cell.key for cell in results.cells}
        if absent:
            status = results.run.get("status")
            incomplete.append(f"shard {shard.label} ({path}, status {status!r}) lacks {len(absent)} cell(s)")
    if incomplete and not allow_missing:
        raise MergeError("; ".join(incomplete) + "; rerun it (or pass --allow-missing for a partial file)")

    order = {cell: position for position, cell in enumerate(everything)}
    merged_cells = sorted(cells.values(), key=lambda c: order[c.key])
    run = _merged_run(first, shards, partial=bool(missing or incomplete), missing=missing)
    run["merge_warnings"] = warnings
    return Results(
        run=run,
        manifest=_merged_manifest(first, shards),
        calibration=dict(first.calibration),
        cells=merged_cells,
    )


def _merged_run(first: Results, shards: Sequence[tuple[Path, Results, Shard]], *, partial: bool,
                missing: list[int]) -> dict[str, Any]:
    runs = [results.run for _path, results, _shard in shards]
    statuses = {run.get("status") for run in runs}
    if partial:
        status = "partial"
    elif statuses == {"complete"}:
        status = "complete"
    else:
        status = "incomplete" if "incomplete" in statuses else "interrupted"
    started = [r["started"] for r in runs if r.get("started")]
    finished = [r["finished"] for r in runs if r.get("finished")]
    config = first.run.get("config") or {}
    return {
        "name": config.get("name") or first.run.get("name"),
        "status": status,
        "started": min(started) if started else None,
        "finished": max(finished) if finished else None,
        "config_path": first.run.get("config_path"),
        "config": config,
        "config_fingerprint": first.run.get("config_fingerprint"),
        "shard": None,
        "merged_from": [
            {
                "path": str(path),
                "shard": shard.to_dict(),
                "name": results.run.get("name"),
                "status": results.run.get("status"),
                "started": results.run.get("started"),
                "finished": results.run.get("finished"),
                "cells": len(results.cells),
                "calibration": results.calibration,
            }
            for path, results, shard in sorted(shards, key=lambda s: s[2].index)
        ],
        "missing_shards": missing,
    }


def _merged_manifest(first: Results, shards: Sequence[tuple[Path, Results, Shard]]) -> dict[str, Any]:
    manifest = dict(first.manifest)
    manifest["shards"] = [
        {
            "shard": shard.label,
            "hostname": results.manifest.get("hostname"),
            "load_average_at_start": results.manifest.get("load_average_at_start"),
            "load_average_at_end": results.manifest.get("load_average_at_end"),
            "git": results.manifest.get("git"),
        }
        for _path, results, shard in sorted(shards, key=lambda s: s[2].index)
    ]
    return manifest
