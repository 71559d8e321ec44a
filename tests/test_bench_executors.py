"""Where cells run: the in-process and child-process executors of ``keisei_core.bench.run``,
the executor setting, and the progress reporter's events and line."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

import keisei_core.bench as kb
from keisei_core.bench.executors import resolve_executor
from keisei_core.bench.results import CellRecord, load_results
from keisei_core.config import load_experiment
from keisei_core.errors import ConfigError

# A probe that kills its own process for the model whose conv_channels is 5: in a child
# process that is a crash of one group; the rest of the run must go on.
CRASH_PLUGIN = '''
import os
import signal

from keisei_core.plugin import ProbeResult, ProbeSpec, hookimpl


def crash(context):
    if context.model_options.get("conv_channels") == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return ProbeResult("crash", "x", float(os.getpid()), None)


@hookimpl
def keisei_register_probes(register):
    register(ProbeSpec("crash", crash))
'''

TINY = "input_channels = 4, board_size = 3, num_actions = 40"
FAST = """
[bench]
warmup_seconds = 0.01
min_samples = 3
max_samples = 5
time_budget_seconds = 0.05
threads = 1
[wandb]
mode = "disabled"
"""


def _config(tmp_path: Path, body: str) -> Path:
    plugin = tmp_path / "crash_plugin.py"
    plugin.write_text(CRASH_PLUGIN)
    path = tmp_path / "exp.toml"
    path.write_text(f'plugins = ["{plugin}"]\n' + textwrap.dedent(body) + FAST)
    return path


def test_a_crashing_group_fails_its_cells_and_the_run_goes_on(tmp_path: Path) -> None:
    config = _config(tmp_path, f"""
        name = "child"
        models = [
          {{ name = "actor-critic", options = {{ {TINY}, conv_channels = 4 }}, label = "tiny" }},
          {{ name = "actor-critic", options = {{ {TINY}, conv_channels = 5 }}, label = "doomed" }},
        ]
        probes = ["latency", "crash"]
        batch_sizes = [1]
        """)
    results = kb.run(config, out_dir=tmp_path / "out", reporters=[], executor="child-process")
    assert results.run["status"] == "complete" and results.run["executor"] == "child-process"
    cells = {(c.model_label, c.probe): c for c in results.cells}
    assert len(cells) == 4
    assert cells[("tiny", "latency")].status == "ok" and cells[("tiny", "crash")].status == "ok"
    for probe in ("latency", "crash"):  # the whole doomed group ran in the child that died
        doomed = cells[("doomed", probe)]
        assert doomed.status == "failed" and doomed.reason is not None
        assert "doomed/eager in a child process" in doomed.reason
        assert "was killed by SIGKILL (status -9)" in doomed.reason
    # The tiny group ran in a process of its own, not in this one.
    import os

    tiny = cells[("tiny", "crash")]
    assert tiny.result is not None and tiny.result.value != float(os.getpid())
    on_disk = load_results(tmp_path / "out" / "results.json")
    assert [c.key for c in on_disk.cells] == [c.key for c in results.cells]


@pytest.mark.slow
def test_child_process_cells_match_in_process_cells(tmp_path: Path) -> None:
    body = f"""
        name = "same"
        models = [{{ name = "actor-critic", options = {{ {TINY}, conv_channels = 4 }}, label = "tiny" }}]
        probes = ["flops", "latency", "train-step"]
        batch_sizes = [1, 2]
        """
    config = _config(tmp_path, body)
    here = kb.run(config, out_dir=tmp_path / "here", reporters=[])
    child = kb.run(config, out_dir=tmp_path / "child", reporters=[], overrides=['bench.executor="child-process"'])
    assert here.run["executor"] == "in-process" and child.run["executor"] == "child-process"
    assert [c.key for c in child.cells] == [c.key for c in here.cells]
    assert [c.status for c in child.cells] == ["ok"] * 6
    assert [c.model_options for c in child.cells] == [c.model_options for c in here.cells]
    flops = [c.value for c in child.cells if c.probe == "flops"]
    assert flops == [c.value for c in here.cells if c.probe == "flops"]  # deterministic: identical


def test_executor_setting_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[bench]\nexecutor = "threads"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: bench\.executor") as caught:
        load_experiment(path)
    assert "\n" not in str(caught.value)
    config = load_experiment(None)
    assert config.bench.executor == "in-process"
    assert resolve_executor(None, config).name == "in-process"
    assert resolve_executor("child-process", config).name == "child-process"
    with pytest.raises(ConfigError, match="unknown executor 'gpu'; known: child-process, in-process"):
        resolve_executor("gpu", config)


class Recorder(kb.Reporter):
    """Every reporter event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_plan(self, total_cells: int) -> None:
        self.events.append(("plan", total_cells))

    def on_start(self, results: Any) -> None:
        self.events.append(("start", len(results.cells)))

    def on_activity(self, text: str) -> None:
        self.events.append(("activity", text))

    def on_cell(self, cell: CellRecord, results: Any) -> None:
        self.events.append(("cell", f"{cell.model_label}/{cell.strategy}/b{cell.batch_size}/{cell.probe}"))

    def on_finish(self, results: Any) -> None:
        self.events.append(("finish", len(results.cells)))


def test_progress_reporter_events_and_line(tmp_path: Path) -> None:
    config = _config(tmp_path, f"""
        name = "progress"
        models = [{{ name = "actor-critic", options = {{ {TINY}, conv_channels = 4 }}, label = "tiny" }}]
        probes = ["flops", "train-step"]
        batch_sizes = [1, 2]
        """)
    recorder, stream = Recorder(), io.StringIO()
    progress = kb.ProgressReporter(stream, min_interval=0)
    kb.run(config, out_dir=tmp_path / "out", reporters=[recorder, progress])
    assert recorder.events == [
        ("plan", 4),
        ("start", 0),
        ("activity", "tiny/eager build"),
        ("activity", "tiny/eager/b1/flops"),
        ("cell", "tiny/eager/b1/flops"),
        ("activity", "tiny/eager/b2/flops"),
        ("cell", "tiny/eager/b2/flops"),
        ("activity", "tiny/eager build"),  # train mode: its own group
        ("activity", "tiny/eager/b1/train-step"),
        ("cell", "tiny/eager/b1/train-step"),
        ("activity", "tiny/eager/b2/train-step"),
        ("cell", "tiny/eager/b2/train-step"),
        ("finish", 4),
    ]
    assert (progress.done, progress.total, progress.activity) == (4, 4, "tiny/eager/b2/train-step")
    frames = stream.getvalue().replace("\r", "\n").splitlines()
    assert any("bench:" in f and "0/4" in f for f in frames)
    last = [f for f in frames if f.strip()][-1]
    # cells done / total, elapsed<ETA, the current cell
    assert "4/4" in last and "tiny/eager/b2/train-step" in last and "<00:00" in last


def test_bench_cli_progress_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from keisei_core.cli.main import main

    config = _config(tmp_path, f"""
        name = "cli"
        models = [{{ name = "actor-critic", options = {{ {TINY}, conv_channels = 4 }}, label = "tiny" }}]
        probes = ["flops"]
        batch_sizes = [1]
        """)
    assert main(["bench", str(config), "--out", str(tmp_path / "a"), "--progress"]) == 0
    assert "1/1" in capsys.readouterr().err
    # stderr is not a terminal under pytest: no progress line unless asked for.
    assert main(["bench", str(config), "--out", str(tmp_path / "b")]) == 0
    assert "bench:" not in capsys.readouterr().err
