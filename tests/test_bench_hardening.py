"""Issue 16: SIGTERM leaves a valid run, a killed run reads as incomplete, and the results
writer never fails on a value."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keisei_core.bench.merge import merge_results
from keisei_core.bench.results import CellRecord, Results, load_results
from keisei_core.bench.shards import Shard
from keisei_core.bench.table import format_header
from keisei_core.cli.main import main

PLUGIN = '''
import time
from keisei_core import ProbeSpec, hookimpl
from keisei_core.bench.probe_api import ProbeResult


def sleepy(context):
    if context.batch_size == 4:
        time.sleep(120)  # SIGTERM arrives here
    return ProbeResult("sleepy", "x", float(context.batch_size), None)


@hookimpl
def keisei_register_probes(register):
    register(ProbeSpec("sleepy", sleepy))
'''

CONFIG = """
name = "term-test"
plugins = ["sleepy.py"]
models = [{ name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 40 }, label = "tiny" }]
probes = ["sleepy"]
batch_sizes = [1, 2, 4, 8]

[bench]
threads = 1
"""


def test_sigterm_during_bench_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "sleepy.py").write_text(PLUGIN)
    (tmp_path / "c.toml").write_text(CONFIG)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "keisei_core", "bench", "c.toml", "--out", str(out), "--no-progress", "--wandb", "disabled"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    results = out / "results.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and len(json.loads(results.read_text())["cells"]) == 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # inside the batch-4 cell's sleep
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    data = json.loads(results.read_text())
    assert data["run"]["status"] == "interrupted" and data["run"]["signal"] == "SIGTERM"
    assert data["run"]["finished"] is not None
    assert [c["batch_size"] for c in data["cells"]] == [1, 2]
    table = (out / "table.txt").read_text()
    assert "(interrupted)" in table and "tiny" in table and "tiny" in stdout
    assert "terminated (SIGTERM); 2 finished cells kept" in stderr and "Traceback" not in stderr


def _cell(batch_size: int, **fields: object) -> CellRecord:
    return CellRecord(
        model="actor-critic", model_label="tiny", model_options={}, strategy="eager", probe="flops",
        batch_size=batch_size, device="cpu", dtype="float32", status="skipped", reason="r", **fields,  # type: ignore[arg-type]
    )


def _killed_run(path: Path, cells: list[CellRecord], config: dict[str, object] | None = None, shard: Shard | None = None) -> None:
    # What SIGKILL leaves: status "running", written by a process that no longer exists.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    import socket

    run = {"name": "killed", "status": "running", "started": "2026-01-01T00:00:00+00:00", "finished": None,
           "config": config or {}, "pid": int(gone.stdout), "host": socket.gethostname(),
           "shard": shard.to_dict() if shard else None}
    Results(run=run, manifest={"device": "cpu"}, cells=cells, path=path).save()


def test_a_killed_run_reads_as_incomplete_in_table_compare_and_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "killed.json"
    _killed_run(path, [_cell(1)])
    loaded = load_results(path)
    assert loaded.run["status"] == "incomplete" and "process is gone" in loaded.run["status_note"]
    assert "(incomplete)" in format_header(loaded)
    assert main(["compare", str(path), str(path)]) == 0
    assert "the old run is incomplete (1 cells)" in capsys.readouterr().err
    # A live writer's file still reads as running.
    live = json.loads(path.read_text())
    live["run"]["pid"] = os.getpid()
    path.write_text(json.dumps(live))
    assert load_results(path).run["status"] == "running"


def test_merge_of_a_killed_shard_says_incomplete(tmp_path: Path) -> None:
    from keisei_core.bench.shards import config_fingerprint, shard_cells
    from keisei_core.config import experiment_to_dict, load_experiment

    config = load_experiment(None, ['models=[{name = "actor-critic", label = "tiny"}]', 'probes=["flops"]', "batch_sizes=[1, 2]"])
    paths = []
    for index in (1, 2):
        shard = Shard(index, 2)
        cells = [_cell(b) for (_label, _strategy, _probe, b) in shard_cells(config, shard)]
        path = tmp_path / f"s{index}.json"
        _killed_run(path, cells, experiment_to_dict(config), shard)
        data = json.loads(path.read_text())
        data["run"]["config_fingerprint"] = config_fingerprint(config)
        path.write_text(json.dumps(data))
        paths.append(path)
    merged = merge_results(paths)
    assert merged.run["status"] == "incomplete"
    assert {m["status"] for m in merged.run["merged_from"]} == {"incomplete"}


def test_results_writer_turns_non_finite_numbers_into_null_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    results = Results(run={"name": "x", "status": "complete", "speed": math.inf}, manifest={"load": [math.nan, 1.0]}, path=path)
    results.append(_cell(1, compile_report={"ratio": -math.inf, "fine": 2.0}))
    data = json.loads(path.read_text())  # strict JSON: no NaN/Infinity tokens
    assert data["run"]["speed"] is None and data["manifest"]["load"] == [None, 1.0]
    assert data["cells"][0]["compile_report"] == {"ratio": None, "fine": 2.0}
    (note,) = data["notes"]
    assert "run.speed: inf written as null" in note and "manifest.load[0]: nan written as null" in note
    assert "cells[0].compile_report.ratio: -inf written as null" in note
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


@pytest.mark.parametrize(
    ("start", "end", "busy"),
    [
        (0.3, 2.1, False),  # the run's own 2 threads are most of the end reading
        (0.2, 3.4, True),  # 1.4 of other processes besides them
        (1.9, 2.0, True),  # a job that kept both cores busy up to the start
        (0.4, 0.9, False),
    ],
)
def test_busy_warning_leaves_out_the_runs_own_threads(start: float, end: float, busy: bool) -> None:
    from keisei_core.bench.table import busy_warning

    manifest = {"cpu_count": 2, "threads": 2, "load_average_at_start": [start, 0.0, 0.0],
                "load_average_at_end": [end, 0.0, 0.0]}
    warning = busy_warning(manifest)
    assert (warning is not None) is busy, warning
    if busy:
        assert "besides this run's 2 threads" in warning
