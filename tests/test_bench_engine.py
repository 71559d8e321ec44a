"""The benchmark engine on a tiny model: isolation, interruption, the results schema, probes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from keisei_core.bench.engine import BenchEngine
from keisei_core.bench.plots import write_plots
from keisei_core.bench.reporter import Reporter
from keisei_core.bench.results import SCHEMA, SCHEMA_VERSION, CellRecord, Results, load_results
from keisei_core.bench.table import format_header, format_results_table
from keisei_core.config import load_experiment
from keisei_core.errors import ConfigError, UnknownNameError
from keisei_core.plugins import PluginHost

TEST_PLUGIN = '''
import copy

from keisei_core import ProbeSpec, StrategySpec, hookimpl
from keisei_core.bench.probe_api import ProbeResult, ProbeUnsupported


def explode(context):
    raise RuntimeError("boom in probe")


def unsupported(context):
    raise ProbeUnsupported("needs a feature this cell lacks")


def stop_at_four(context):
    if context.batch_size == 4:
        raise KeyboardInterrupt
    return ProbeResult("stopper", "x", 1.0, None)


def wrong_type(context):
    return 42


def copy_apply(model, context):
    return copy.deepcopy(model)


def broken_apply(model, context):
    raise RuntimeError("boom in apply")


@hookimpl
def keisei_register_probes(register):
    register(ProbeSpec("explode", explode))
    register(ProbeSpec("unsupported-probe", unsupported))
    register(ProbeSpec("stopper", stop_at_four))
    register(ProbeSpec("wrong-type", wrong_type))
    register(ProbeSpec("gpu-only", explode, devices=["cuda"]))


@hookimpl
def keisei_register_compile_strategies(register):
    register(StrategySpec("copy", copy_apply, description="a deep copy (stands in for a compiler)"))
    register(StrategySpec("broken", broken_apply))
    register(StrategySpec("inference-only", copy_apply, training=False))
'''

TINY = '{ name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 40 }, label = "tiny" }'
FAST = """
[bench]
warmup_seconds = 0.0
min_samples = 3
max_samples = 5
time_budget_seconds = 0.02
threads = 1

[wandb]
mode = "disabled"
"""


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "bench_test_plugin.py"
    path.write_text(TEST_PLUGIN)
    return path


@pytest.fixture(scope="module")
def host(plugin_file: Path) -> PluginHost:
    return PluginHost([str(plugin_file)], include_installed=False, env={}).load()


def _config(tmp_path: Path, body: str) -> Any:
    path = tmp_path / "exp.toml"
    path.write_text(f'name = "t"\nmodels = [{TINY}]\n{textwrap.dedent(body)}\n{FAST}')
    return load_experiment(path)


def _engine(tmp_path: Path, host: PluginHost, body: str, **kwargs: Any) -> BenchEngine:
    return BenchEngine(_config(tmp_path, body), host, tmp_path / "out" / "results.json", progress=False, **kwargs)


class FileWatcher(Reporter):
    """Checks after every cell that the file on disk already holds it."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_start(self, results: Results) -> None:
        assert results.path is not None and results.path.exists()

    def on_cell(self, cell: CellRecord, results: Results) -> None:
        assert results.path is not None
        on_disk = json.loads(results.path.read_text())
        self.seen.append(len(on_disk["cells"]))
        assert len(on_disk["cells"]) == len(results.cells)


def test_failing_and_unsupported_cells_are_isolated(tmp_path: Path, host: PluginHost) -> None:
    watcher = FileWatcher()
    engine = _engine(
        tmp_path, host,
        """
        strategies = ["eager", "broken", "inference-only"]
        probes = ["latency", "explode", "unsupported-probe", "wrong-type", "gpu-only", "train-step"]
        batch_sizes = [1, 2]
        """,
        observers=[watcher],
    )
    threads_before = torch.get_num_threads()
    results = engine.run()
    assert torch.get_num_threads() == threads_before
    assert results.run["status"] == "complete"
    assert len(results.cells) == 3 * 6 * 2
    assert watcher.seen == list(range(1, len(results.cells) + 1))

    def cell(strategy: str, probe: str, batch: int = 1) -> CellRecord:
        found = results.find("tiny", strategy, probe, batch)
        assert found is not None
        return found

    ok = cell("eager", "latency")
    assert ok.status == "ok" and ok.value is not None and ok.value > 0
    assert ok.statistics is not None and ok.statistics.n >= 3 and ok.statistics.unit == "ms"
    assert cell("eager", "train-step", 2).status == "ok"
    assert cell("eager", "explode").status == "failed"
    assert cell("eager", "explode").reason == "RuntimeError: boom in probe"
    assert cell("eager", "unsupported-probe").status == "skipped"
    assert cell("eager", "unsupported-probe").reason == "needs a feature this cell lacks"
    assert "expected ProbeResult" in (cell("eager", "wrong-type").reason or "")
    assert cell("eager", "gpu-only").status == "skipped"
    for probe in ("latency", "train-step"):
        broken = cell("broken", probe, 2)
        assert broken.status == "failed" and "boom in apply" in (broken.reason or "")
    assert cell("inference-only", "latency").status == "ok"
    assert cell("inference-only", "train-step").status == "skipped"
    assert "does not support training" in (cell("inference-only", "train-step").reason or "")
    log = (tmp_path / "out" / "failures.log").read_text()
    assert "boom in probe" in log and "Traceback" in log


def test_results_file_schema_and_manifest(tmp_path: Path, host: PluginHost, plugin_file: Path) -> None:
    engine = _engine(tmp_path, host, 'strategies = ["eager", "copy"]\nprobes = ["throughput"]\nbatch_sizes = [1, 4]')
    engine.run()
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    assert data["run"]["status"] == "complete" and data["run"]["config"]["batch_sizes"] == [1, 4]
    manifest = data["manifest"]
    for key in ("torch", "python", "cpu", "threads", "plugins", "git", "platform"):
        assert key in manifest
    assert manifest["threads"] == 1
    local = [p for p in manifest["plugins"] if p["source"] == "local"]
    assert local and local[0]["status"] == "loaded" and "copy" in local[0]["registered"]["strategies"]
    assert all(p["version"] for p in manifest["plugins"] if p["source"] == "builtin")
    required = {"model", "strategy", "probe", "batch_size", "status", "reason", "compile_report", "statistics",
                "value", "unit", "higher_is_better", "extra", "warnings", "model_options"}
    for cell in data["cells"]:
        assert required <= set(cell)
        assert cell["status"] == "ok"
        stats = cell["statistics"]
        for key in ("median", "q1", "q3", "p10", "p90", "mean", "std", "n", "outliers_low", "outliers_high",
                    "samples", "iqr_ratio"):
            assert key in stats
        assert stats["n"] == len(stats["samples"])
    copy_cells = [c for c in data["cells"] if c["strategy"] == "copy"]
    assert copy_cells[0]["compile_report"]["status"] == "compiled"
    for cell in copy_cells:  # compile_model's paired speed check, at the cell's own batch size
        check = cell["speed_check"]
        assert check["batch_size"] == cell["batch_size"] and check["verdict"] in ("faster", "slower", "same")
        assert check["speedup"] > 0 and check["samples"] >= 3
    again = load_results(tmp_path / "out" / "results.json")
    assert [c.key for c in again.cells] == [
        ("tiny", s, "throughput", b) for s in ("eager", "copy") for b in (1, 4)
    ]
    table = format_results_table(again)
    assert "×eager" in table and "throughput [samples/s]" in table
    assert "1 threads" in format_header(again)
    plots = write_plots(again, tmp_path / "plots")
    assert {p.name for p in plots} == {"throughput.png", "speedup.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)


def test_a_speedup_only_run_gets_its_speedup_plot(tmp_path: Path, host: PluginHost) -> None:
    """The quickstart's shape (the speedup probe only, no rate probe) still gets speedup.png,
    from the probe's own paired ratios."""
    results = _engine(tmp_path, host, 'strategies = ["eager", "copy"]\nprobes = ["speedup"]\nbatch_sizes = [1, 2]').run()
    assert [c.status for c in results.cells if c.strategy == "copy"] == ["ok", "ok"]
    plots = write_plots(results, tmp_path / "plots")
    assert [p.name for p in plots] == ["speedup.png"]
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compile_time_of_eager_is_skipped(tmp_path: Path, host: PluginHost) -> None:
    results = _engine(tmp_path, host, 'probes = ["compile-time", "speedup"]\nbatch_sizes = [1]').run()
    assert [(c.probe, c.status) for c in results.cells] == [("compile-time", "skipped"), ("speedup", "skipped")]
    assert all(c.reason for c in results.cells)


def test_interrupt_keeps_finished_cells(tmp_path: Path, host: PluginHost) -> None:
    engine = _engine(tmp_path, host, 'probes = ["stopper"]\nbatch_sizes = [1, 2, 4, 8]')
    results = engine.run()
    assert results.run["status"] == "interrupted"
    assert [c.batch_size for c in results.cells] == [1, 2]
    on_disk = load_results(tmp_path / "out" / "results.json")
    assert on_disk.run["status"] == "interrupted"
    assert [c.batch_size for c in on_disk.cells] == [1, 2]
    assert not list((tmp_path / "out").glob(".results.json.*"))  # no temp files left behind


def test_bad_names_and_duplicate_labels_fail_before_running(tmp_path: Path, host: PluginHost) -> None:
    with pytest.raises(UnknownNameError, match="latencyy"):
        _engine(tmp_path, host, 'probes = ["latencyy"]').run()
    assert not (tmp_path / "out" / "results.json").exists()
    path = tmp_path / "dup.toml"
    path.write_text(f'models = [{TINY}, {TINY}]\n{FAST}')
    engine = BenchEngine(load_experiment(path), host, tmp_path / "o2" / "results.json", progress=False)
    with pytest.raises(ConfigError, match="label"):
        engine.run()


def test_counting_probes(tmp_path: Path, host: PluginHost) -> None:
    results = _engine(
        tmp_path, host, 'strategies = ["eager", "copy"]\nprobes = ["flops", "peak", "mfu", "speedup"]\nbatch_sizes = [2]'
    ).run()
    flops = results.find("tiny", "eager", "flops", 2)
    assert flops is not None and flops.status == "ok"
    # conv 3x3 4->16 on 3x3 plus two linear heads on 16*9 features (multiply-add = 2 FLOP).
    expected = 2 * (9 * 16 * 4 * 9) + 2 * (144 * 40) + 2 * 144
    assert flops.value == expected
    assert flops.result is not None and flops.result.extra["train_step_flop_per_sample"] > expected
    peak = results.find("tiny", "eager", "peak", 2)
    assert peak is not None and peak.value is not None and peak.value > 0.01
    again = results.find("tiny", "copy", "peak", 2)
    assert again is not None and again.result is not None and again.result.extra["cached"] is True
    assert again.value == peak.value
    assert any(k.startswith("peak_flops_cpu_float32") for k in results.calibration)
    mfu = results.find("tiny", "copy", "mfu", 2)
    assert mfu is not None and mfu.status == "ok" and mfu.value is not None and 0 < mfu.value < 100
    speedup = results.find("tiny", "copy", "speedup", 2)
    assert speedup is not None and speedup.status == "ok" and speedup.value is not None
    assert 0.2 < speedup.value < 5  # a copy of eager runs at eager's speed, give or take noise


@pytest.mark.slow
def test_child_process_probes(tmp_path: Path, host: PluginHost, plugin_file: Path) -> None:
    results = _engine(
        tmp_path, host, 'strategies = ["copy"]\nprobes = ["memory", "compile-time"]\nbatch_sizes = [2]',
        plugins=[str(plugin_file)],
    ).run()
    memory = results.find("tiny", "copy", "memory", 2)
    assert memory is not None and memory.status == "ok", memory.reason if memory else None
    assert memory.value is not None and memory.value > 50  # a python process with torch imported
    extra = memory.result.extra  # type: ignore[union-attr]
    assert extra["after_import_mib"] <= extra["after_build_mib"] <= memory.value
    compile_time = results.find("tiny", "copy", "compile-time", 2)
    assert compile_time is not None and compile_time.status == "ok", compile_time.reason if compile_time else None
    extra = compile_time.result.extra  # type: ignore[union-attr]
    assert extra["cold_seconds"] > 0 and extra["warm_seconds"] > 0
    # compile_model's own split is carried over from the child's report.
    for run in ("cold", "warm"):
        compile_seconds, validation_seconds = extra[f"{run}_compile_seconds"], extra[f"{run}_validation_seconds"]
        assert compile_seconds is not None and validation_seconds is not None
        assert 0 <= compile_seconds + validation_seconds <= extra[f"{run}_seconds"]
