"""keisei-core without its extras (testing, wandb, plots): the core still benchmarks, and a
feature that needs a missing extra says which one in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from keisei_core.cli.main import main
from keisei_core.optional import MissingExtraError, available, require

CONFIG = """
name = "extras-test"
models = [{ name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 40 }, label = "tiny" }]
strategies = ["eager"]
probes = ["throughput"]
batch_sizes = [1]

[bench]
warmup_seconds = 0.0
min_samples = 3
max_samples = 5
time_budget_seconds = 0.02
threads = 1
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)  # wandb.mode is offline by default
    return path


@pytest.fixture
def without_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes every import of the package fail, as if not installed.
    for name in ("wandb", "matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("without_extras")
def test_bench_runs_without_wandb_and_plots_and_says_so(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["bench", str(config_file), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "wandb: skipped, W&B tracking needs wandb, which is not installed: pip install 'keisei-core[wandb]'" in err
    assert "plots: skipped, plotting needs matplotlib, which is not installed: pip install 'keisei-core[plots]'" in err
    data = json.loads((out / "results.json").read_text())
    assert [c["status"] for c in data["cells"]] == ["ok"]
    assert (out / "table.txt").exists() and not list(out.glob("*.png"))


@pytest.mark.usefixtures("without_extras")
def test_asking_for_wandb_without_it_is_one_line(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", str(config_file), "--out", str(tmp_path / "run"), "--no-progress", "--wandb", "offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'keisei-core[wandb]'" in err


def test_the_testing_kit_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import keisei_core.testing as kit

    monkeypatch.delitem(kit.__dict__, "ModelContract", raising=False)
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'keisei-core\[testing\]'"):
        kit.ModelContract  # noqa: B018


def test_require_and_available(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available("json") and not available("no_such_package_for_keisei")
    assert require("json", "anything").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert not available("wandb")
    with pytest.raises(MissingExtraError, match=r"^W&B tracking needs wandb, which is not installed"):
        require("wandb", "W&B tracking")


def test_results_to_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    from keisei_core.bench.probe_api import ProbeResult
    from keisei_core.bench.results import CellRecord, Results
    from keisei_core.stats import summarize

    base = {"model": "m", "model_label": "m", "model_options": {}, "probe": "throughput",
            "batch_size": 4, "device": "cpu", "dtype": "float32"}
    stats = summarize([1.0, 2.0, 3.0], unit="samples/s")
    results = Results(run={}, manifest={}, cells=[
        CellRecord(**base, strategy="eager", status="ok",
                   result=ProbeResult("throughput", "samples/s", stats.median, stats)),
        CellRecord(**base, strategy="broken", status="failed", reason="RuntimeError: no"),
    ])
    frame = results.to_pandas()
    assert list(frame["strategy"]) == ["eager", "broken"] and list(frame["status"]) == ["ok", "failed"]
    assert frame.loc[0, "median"] == 2.0 and frame.loc[0, "n"] == 3 and frame.loc[0, "unit"] == "samples/s"
    assert frame["value"].isna().tolist() == [False, True]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError, match=r"Results\.to_pandas\(\) needs pandas.*keisei-core\[pandas\]"):
        results.to_pandas()


def test_the_pipeline_runs_from_python_and_gives_a_data_frame(tmp_path: Path, config_file: Path) -> None:
    import keisei_core.bench as kb

    seen: list[str] = []

    class Progress(kb.Reporter):
        def on_cell(self, cell, results):  # type: ignore[no-untyped-def]
            seen.append(f"{cell.strategy}/{cell.probe}/{cell.batch_size}:{cell.status}")

        def on_finish(self, results):  # type: ignore[no-untyped-def]
            seen.append("finished")

    table = kb.TableReporter(tmp_path / "run")
    results = kb.run(config_file, out_dir=tmp_path / "run", reporters=[table, Progress()],
                     overrides=["batch_sizes=[1, 2]"])
    assert seen == ["eager/throughput/1:ok", "eager/throughput/2:ok", "finished"]
    assert "throughput [samples/s]" in (tmp_path / "run" / "table.txt").read_text() == f"{table.header}\n{table.table}\n"
    assert results.baseline == "eager" and results.run["status"] == "complete"
    frame = results.to_pandas()
    assert frame.shape[0] == 2 and (frame["value"] > 0).all()
