"""The torchrun runner: two rank processes with exactly the environment torchrun gives its
workers (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT and the agent's store, here a
store this test hosts on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from keisei_plugin_distributed.launch import loopback_store
from keisei_plugin_distributed.options import DistributedProbeError
from keisei_plugin_distributed.torchrun import main, torchrun_environment

from keisei_core.bench.results import load_results

CONFIG = """
name = "ddp-torchrun"
models = [
  { name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 40, conv_channels = 4 }, label = "tiny" },
  { name = "ddp-faulty", options = { input_channels = 4, board_size = 3, num_actions = 40, mode = "build" }, label = "no-build" },
]
strategies = ["eager", "onnxruntime"]
probes = ["train-step-ddp", "latency"]
batch_sizes = [8]
plugins = ["PLUGIN"]
[probe_options.train-step-ddp]
timeout_seconds = 120
baseline = false
[bench]
warmup_seconds = 0.05
min_samples = 3
max_samples = 8
time_budget_seconds = 0.2
threads = 2
[wandb]
mode = "disabled"
"""


def test_without_torchrun_it_says_how_to_start_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DistributedProbeError, match="RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"):
        torchrun_environment({})
    saved = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        assert main(["nothing.toml"]) == 2
    finally:
        os.environ.update(saved)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "start this module with torchrun" in lines[0]


@pytest.mark.slow
def test_two_torchrun_workers_write_one_results_file(tmp_path: Path, faulty_plugin: str) -> None:
    config = tmp_path / "ddp.toml"
    config.write_text(textwrap.dedent(CONFIG).replace("PLUGIN", faulty_plugin))
    store, port = loopback_store(180)
    workers = []
    try:
        for rank in range(2):
            env = {
                **os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                # As under torchrun: the agent hosts the store, workers connect to it.
                "TORCHELASTIC_USE_AGENT_STORE": "True", "GLOO_SOCKET_IFNAME": "lo",
            }
            command = [sys.executable, "-m", "keisei_plugin_distributed.torchrun", str(config), "--out", str(tmp_path / "out")]
            workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    finally:
        for worker in workers:  # never leave a worker behind, whatever failed above
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        del store
    assert [w.returncode for w in workers] == [0, 0], outputs
    results = load_results(tmp_path / "out" / "results.json")
    assert results.run["status"] == "complete"
    assert results.manifest["world_size"] == 2 and results.manifest["launcher"] == "torchrun"
    cells = {(c.model_label, c.strategy): c for c in results.cells}
    assert [c.probe for c in results.cells] == ["train-step-ddp"] * 4  # other probes are not this runner's
    ok = cells[("tiny", "eager")]
    assert ok.status == "ok", ok.reason
    assert ok.result is not None and ok.result.extra["launcher"] == "torchrun"
    assert ok.result.extra["world_size"] == 2 and ok.result.extra["backend"] == "gloo"
    assert cells[("tiny", "onnxruntime")].status == "skipped"
    failed = cells[("no-build", "eager")]
    assert failed.status == "failed" and failed.reason is not None
    assert "rank 1: ValueError: ddp-faulty refuses to build on rank 1" in failed.reason
    assert "tiny/eager/b8: " in outputs[0] and "samples/s on 2 ranks (gloo)" in outputs[0]
