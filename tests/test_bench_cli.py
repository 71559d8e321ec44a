"""``keisei bench`` end to end on a tiny matrix: results, table, plots and an offline W&B run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from keisei_core.cli.main import main

CONFIG = """
name = "cli-test"
models = [{ name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 40 }, label = "tiny" }]
strategies = ["eager"]
probes = ["throughput", "latency"]
batch_sizes = [1, 2]

[bench]
warmup_seconds = 0.0
min_samples = 3
max_samples = 5
time_budget_seconds = 0.02
threads = 1

[wandb]
mode = "offline"
project = "keisei-tests"
log_checkpoints = true
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


def test_bench_writes_results_table_plot_and_offline_wandb_run(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wandb_dir = tmp_path / "wandb-root"
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    assert main(["bench", str(config_file), "--out", str(out), "--no-progress", "--set", "seed=3"]) == 0
    printed = capsys.readouterr()
    assert "throughput [samples/s]" in printed.out and "tiny" in printed.out
    data = json.loads((out / "results.json").read_text())
    assert data["run"]["status"] == "complete" and data["run"]["config"]["seed"] == 3
    assert [c["status"] for c in data["cells"]] == ["ok"] * 4
    assert "throughput [samples/s]" in (out / "table.txt").read_text()
    assert (out / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    checkpoint = out / "checkpoints" / "tiny-eager.pt"
    assert checkpoint.exists()
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    stream = next(runs[0].glob("run-*.wandb"))
    # The run's records: config with the manifest, per-cell metrics, the cells table, the
    # results artifact and the checkpoint artifact with its metadata. wandb-core writes the
    # file from its own process and may still be flushing after run.finish() returns in
    # this process (a CLI run waits for it at exit), so poll for a bounded time.
    needles = (b"manifest", b"throughput/tiny/eager/b1", b"cells", b"tiny-eager-checkpoint",
               b"model_options", b"benchmark-results")
    deadline = time.monotonic() + 60
    while True:
        content = stream.read_bytes()
        missing = [n for n in needles if n not in content]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, missing
    assert (runs[0] / "files").is_dir()


def test_wandb_disabled_never_imports_wandb(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import of wandb now fails
    out = tmp_path / "run"
    assert main(["bench", str(config_file), "--out", str(out), "--no-progress", "--wandb", "disabled"]) == 0
    assert (out / "results.json").exists() and not (out / "wandb").exists()


def test_bench_user_errors_are_one_line(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: the packaged quickstart is the default
    assert main(["bench", "--wandb", "disabled", "--set", "probes=['latncy']"]) == 2
    err = capsys.readouterr().err
    assert "latncy" in err and err.count("\n") == 1
    assert main(["bench", str(config_file), "--wandb", "disabled", "--set", "probes=['latncy']"]) == 2
    err = capsys.readouterr().err
    assert "latncy" in err and "latency" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_the_default_config_ships_in_the_package_and_is_the_repository_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keisei_core.cli.commands.bench import _config_path, packaged_config

    repository = Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml"
    assert packaged_config().is_file() and repository.resolve() == packaged_config()
    monkeypatch.chdir(tmp_path)
    assert Path(_config_path(None)) == packaged_config()
    from keisei_core.config import load_experiment

    config = load_experiment(_config_path(None), [])
    assert config.output_dir == "results" and "auto" in config.strategies
