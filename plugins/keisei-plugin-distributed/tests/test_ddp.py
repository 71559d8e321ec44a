"""train-step-ddp for real: two gloo ranks on this CPU, through the benchmark engine.

Every launch here is bounded by the probe's ``timeout_seconds``; the failure runs use
the forkserver start method (ranks start in about a second instead of importing torch
anew), the good run the default, spawn.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from keisei_core.bench.engine import BenchEngine
from keisei_core.bench.results import CellRecord, Results
from keisei_core.config import load_experiment
from keisei_core.plugins import PluginHost

pytestmark = pytest.mark.slow

TINY = "input_channels = 4, board_size = 3, num_actions = 40"
# Bounds every launch of the failure run, the hanging one included; with a warm forkserver
# a healthy tiny cell takes under 2 s on this 2-core machine, busy (load 7) as it was.
TIMEOUT = 8
FAST = """
[bench]
warmup_seconds = 0.05
min_samples = 3
max_samples = 8
time_budget_seconds = 0.2
threads = 2
[wandb]
mode = "disabled"
"""


def _run(tmp_path: Path, host: PluginHost, plugin: str, body: str) -> Results:
    path = tmp_path / "exp.toml"
    path.write_text(textwrap.dedent(body) + FAST)
    config = load_experiment(path)
    engine = BenchEngine(config, host, tmp_path / "out" / "results.json", progress=False, plugins=[plugin])
    return engine.run()


def _cells(results: Results) -> dict[str, CellRecord]:
    return {c.model_label: c for c in results.cells}


def test_two_gloo_ranks_measure_the_ppo_step(
    tmp_path: Path, host: PluginHost, faulty_plugin: str, leftover_ranks: Callable[[], list[int]]
) -> None:
    results = _run(tmp_path, host, faulty_plugin, f"""
        name = "ddp"
        models = [{{ name = "actor-critic", options = {{ {TINY}, conv_channels = 4 }}, label = "tiny" }}]
        strategies = ["eager"]
        probes = ["train-step-ddp"]
        batch_sizes = [8]
        [probe_options.train-step-ddp]
        world_size = 2
        timeout_seconds = 240
        """)
    (cell,) = results.cells
    assert cell.status == "ok", cell.reason
    assert cell.result is not None and cell.statistics is not None
    extra = cell.result.extra
    assert (extra["world_size"], extra["backend"], extra["global_batch"]) == (2, "gloo", 16)
    assert extra["launcher"] == "torch.multiprocessing (spawn)"
    assert [r["rank"] for r in extra["ranks"]] == [0, 1]
    assert all(r["samples_per_second"] > 0 and r["threads"] == 1 and r["steps"] > 3 for r in extra["ranks"])
    # Same seed, same model, DDP-synchronised weights: the ranks' losses differ only by their data.
    assert all(isinstance(r["final_loss"], float) for r in extra["ranks"])
    assert cell.value == pytest.approx(cell.statistics.median)
    assert cell.statistics.unit == "samples/s"
    # The global step time's median, as a rate, sits inside the rates' quartiles.
    assert cell.statistics.q1 <= 16 / (extra["step_ms_median"] / 1e3) <= cell.statistics.q3
    assert extra["one_rank_samples_per_second"] > 0
    assert extra["scaling_efficiency"] == pytest.approx(cell.value / (2 * extra["one_rank_samples_per_second"]))
    assert results.run["status"] == "complete"
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["cells"][0]["extra"]["backend"] == "gloo"
    assert leftover_ranks() == []


def test_failing_and_hanging_ranks_end_their_cells_and_the_matrix_goes_on(
    tmp_path: Path, host: PluginHost, faulty_plugin: str, leftover_ranks: Callable[[], list[int]]
) -> None:
    results = _run(tmp_path, host, faulty_plugin, f"""
        name = "ddp-faults"
        models = [
          {{ name = "ddp-faulty", options = {{ {TINY}, mode = "raise" }}, label = "raises" }},
          {{ name = "ddp-faulty", options = {{ {TINY}, mode = "exit" }}, label = "exits" }},
          {{ name = "ddp-faulty", options = {{ {TINY}, mode = "build", fail_rank = 0 }}, label = "no-build" }},
          {{ name = "ddp-faulty", options = {{ {TINY}, mode = "hang" }}, label = "hangs" }},
          {{ name = "ddp-faulty", options = {{ {TINY} }}, label = "fine" }},
        ]
        strategies = ["eager"]
        probes = ["train-step-ddp"]
        batch_sizes = [4]
        [probe_options.train-step-ddp]
        timeout_seconds = {TIMEOUT}
        start_method = "forkserver"
        baseline = false
        """)
    cells = _cells(results)
    raised = cells["raises"]
    assert raised.status == "failed" and raised.reason is not None
    assert raised.reason.startswith(
        "DistributedProbeError: train-step-ddp: rank 1 of 2 raised RuntimeError: injected failure on rank 1"
    ), raised.reason
    exited = cells["exits"]
    assert exited.status == "failed" and exited.reason is not None
    assert "rank 1 of 2 exited with status 7 in phase 'timing DDP steps'" in exited.reason, exited.reason
    no_build = cells["no-build"]
    assert no_build.status == "failed" and no_build.reason is not None
    assert "building ddp-faulty with eager failed on 1 rank(s): rank 0: ValueError: ddp-faulty refuses" in no_build.reason
    hung = cells["hangs"]
    assert hung.status == "failed" and hung.reason is not None
    assert f"train-step-ddp: 2 of 2 rank(s) did not finish within {TIMEOUT} s" in hung.reason, hung.reason
    assert "rank 1: 'timing DDP steps'" in hung.reason and "all ranks were stopped" in hung.reason
    assert hung.duration_seconds < TIMEOUT + 15  # the deadline, the stop grace, a forkserver fork
    fine = cells["fine"]
    assert fine.status == "ok", fine.reason
    assert fine.result is not None and fine.result.extra["launcher"] == "torch.multiprocessing (forkserver)"
    assert "scaling_efficiency" not in fine.result.extra  # baseline = false
    assert results.run["status"] == "complete"
    assert leftover_ranks() == []
    log = (tmp_path / "out" / "failures.log").read_text()
    assert "injected failure on rank 1" in log
    assert "-- rank 1: exit code 1" in log and "Traceback" in log  # the rank's own traceback


def test_nccl_on_a_cpu_cell_is_a_clear_failure(tmp_path: Path, host: PluginHost, faulty_plugin: str) -> None:
    results = _run(tmp_path, host, faulty_plugin, f"""
        name = "ddp-bad"
        models = [{{ name = "ddp-faulty", options = {{ {TINY} }}, label = "x" }}]
        strategies = ["eager"]
        probes = ["train-step-ddp"]
        batch_sizes = [4]
        [probe_options.train-step-ddp]
        backend = "nccl"
        """)
    (cell,) = results.cells
    assert cell.status == "failed"
    assert cell.reason == (
        "ConfigError: probe_options.train-step-ddp.backend: 'nccl' needs device 'cuda' (this run is on cpu); use gloo"
    )


