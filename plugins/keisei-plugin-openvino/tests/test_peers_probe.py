"""The ``peers`` probe: options, its markdown table, and one real run inside the engine.

The run (slow tier) uses a small actor-critic, one keisei strategy, every peer and a
strategy that is not installed, with short timing: it checks what the probe returns and
that every row ran the runtime it names, not how fast anything is (speed figures come from
``keisei bench configs/peers-cpu.toml``, see docs/compilation.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from keisei_plugin_openvino.options import PEERS
from keisei_plugin_openvino.peer_table import main, peer_tables
from keisei_plugin_openvino.peers import parse_options

from keisei_core.bench.probe_api import ProbeResult
from keisei_core.bench.results import CellRecord, Results
from keisei_core.compile.hardware import native_precision_problem
from keisei_core.errors import ConfigError


def test_options_default_and_are_checked() -> None:
    options = parse_options({})
    assert options.peers == list(PEERS) and "openvino" in options.strategies
    assert options.validation_batch_sizes == [1, 64] and options.emulated_precisions is False
    assert parse_options({"emulated_precisions": True}).emulated_precisions is True
    with pytest.raises(ConfigError, match="emulated_precisions"):
        parse_options({"emulated_precisions": "yes"})
    assert parse_options({"strategies": ["bf16"], "peers": ["onnxruntime-session"]}).strategies == ["bf16"]
    with pytest.raises(ConfigError, match="strategy"):
        parse_options({"strategy": ["bf16"]})
    with pytest.raises(ConfigError, match=r"unknown peer\(s\) \['tensorrt'\]"):
        parse_options({"peers": ["tensorrt"]})
    with pytest.raises(ConfigError, match="strategies"):
        parse_options({"strategies": "bf16"})
    with pytest.raises(ConfigError, match="validation_batch_sizes"):
        parse_options({"validation_batch_sizes": [0]})


def _results(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    cell = CellRecord(
        model="restower", model_label="restower", model_options={}, strategy="eager", probe="peers",
        batch_size=64, device="cpu", dtype="float32", status="ok",
        result=ProbeResult("peers", "x", 1.5, None, extra={"rows": rows}),
    )
    path = tmp_path / "results.json"
    Results(run={}, manifest={}, cells=[cell], path=path).save()
    return path


def test_peer_table_formats_rows_and_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"name": "eager", "kind": "eager", "precision": "float32", "status": "ok", "ms": 640.0,
         "ms_q1": 630.0, "ms_q3": 650.0, "x_eager": 1.0, "gflops": 171.0, "pct_of_peak": 55.5, "max_abs_diff": 0.0},
        {"name": "openvino-latency-bf16", "kind": "peer", "precision": "bfloat16", "status": "ok", "ms": 160.0,
         "ms_q1": 150.0, "ms_q3": 170.0, "x_eager": 4.0, "gflops": 684.0, "pct_of_peak": 30.1, "max_abs_diff": 1.4e-3},
        {"name": "int8", "kind": "keisei", "precision": "int8", "status": "skipped",
         "reason": "strategy 'int8' is not installed"},
    ]
    text = peer_tables(_results(tmp_path, rows))
    assert "| 64 | `eager` | eager | float32 | 640 (630-650) | 1.00x | 171 | 55.5 % | 0.0e+00 |" in text
    assert "| 64 | `openvino-latency-bf16` | peer | bfloat16 | 160 (150-170) | 4.00x | 684 | 30.1 % | 1.4e-03 |" in text
    assert "skipped: strategy 'int8' is not installed" in text
    assert main([str(tmp_path / "results.json")]) == 0 and "`eager`" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "no such results file" in capsys.readouterr().err


@pytest.mark.slow  # converts and exports a model, compiles six peer sessions
def test_one_peers_run_in_the_engine(tmp_path: Path) -> None:
    from keisei_core.bench.engine import BenchEngine
    from keisei_core.config.converter import structure
    from keisei_core.config.experiment import ExperimentConfig
    from keisei_core.plugins import PluginHost

    config = structure(
        {
            "name": "peers-test",
            "models": [{"name": "actor-critic", "options": {"conv_channels": 4, "num_actions": 100}}],
            "strategies": ["eager", "channels-last"],
            "probes": ["peers"],
            "batch_sizes": [4],
            "device": "cpu",
            "output_dir": str(tmp_path),
            "bench": {"warmup_seconds": 0.0, "min_samples": 3, "max_samples": 5,
                      "time_budget_seconds": 0.2, "target_iqr_ratio": 0.5},
            "probe_options": {"peers": {"strategies": ["openvino", "onnxruntime", "bf16", "no-such-strategy"],
                                        "validation_batch_sizes": [1, 4]}},
            "wandb": {"mode": "disabled"},
        },
        ExperimentConfig,
        "peers test",
    )
    results = BenchEngine(config, PluginHost().load(), results_path=tmp_path / "results.json", progress=False).run()
    cells = {cell.strategy: cell for cell in results.cells}
    assert cells["channels-last"].status == "skipped" and "eager float32" in str(cells["channels-last"].reason)
    cell = cells["eager"]
    assert cell.status == "ok", cell.reason
    assert cell.result is not None and cell.value is not None and cell.value > 0
    rows = {row["name"]: row for row in cell.result.extra["rows"]}
    peaks = [name for name, row in rows.items() if row["kind"] == "peak"]
    assert list(rows) == ["eager", "openvino", "onnxruntime", "bf16", "no-such-strategy", *PEERS, *peaks]
    # bfloat16 is timed only where oneDNN computes it natively (an AVX2-only CPU emulates it)
    native_bf16 = native_precision_problem("cpu", "bfloat16") is None
    precisions = ("float32", "bfloat16") if native_bf16 else ("float32",)
    assert len(peaks) == 2 * len(precisions)  # matmul and conv per precision, in the same rounds
    if native_bf16:
        assert rows["bf16"]["status"] == "ok", rows["bf16"].get("reason")
    else:
        assert rows["bf16"]["status"] == "skipped" and "emulated_precisions = true" in rows["bf16"]["reason"]
    for precision in precisions:
        best = max(rows[name]["gflops"] for name in peaks if rows[name]["precision"] == precision)
        assert best * 1e9 == pytest.approx(cell.result.extra["peak_flops_per_second"][precision])
    # keisei's onnxruntime and the direct session are timed apart (no shared name, no shared sample)
    assert rows["onnxruntime"]["kind"] == "keisei" and rows["onnxruntime-session"]["kind"] == "peer"
    assert rows["onnxruntime"]["ms"] != rows["onnxruntime-session"]["ms"]
    assert rows["no-such-strategy"]["status"] == "skipped"
    for name in ("eager", "openvino", "onnxruntime", *PEERS):
        row = rows[name]
        assert row["status"] == "ok", (name, row.get("reason"))
        if row["precision"] == "int8":  # no int8 peak is measured; NNCF really rounds
            assert row["ms"] > 0 and row["gflops"] > 0 and "pct_of_peak" not in row
            assert row["max_abs_diff"] > 0 and row["config"].count("INFERENCE_PRECISION_HINT=f32") == 1
            continue
        assert row["ms"] > 0 and row["gflops"] > 0 and row["pct_of_peak"] > 0
        limit = 1e-4 if row["precision"] == "float32" else 0.1  # bf16 peers really compute in bf16
        assert row["max_abs_diff"] <= limit, (name, row["max_abs_diff"])
    assert rows["eager"]["x_eager"] == pytest.approx(1.0)
    assert rows["openvino-latency-bf16"]["config"].count("INFERENCE_PRECISION_HINT=bf16") == 1
    assert rows["openvino-throughput-f32"]["api"] == "openvino AsyncInferQueue"
    assert cell.result.extra["best_keisei"] in ("openvino", "onnxruntime")
    assert set(cell.result.extra["peak_flops_per_second"]) == set(precisions)
    for name in ("openvino-latency-bf16", "openvino-throughput-bf16"):  # labelled by what OpenVINO ran
        ran = rows[name]["inference_precision"]
        assert ran in ("bf16", "f32") and rows[name]["precision"] == {"bf16": "bfloat16", "f32": "float32"}[ran]
    assert "`openvino-throughput-bf16`" in peer_tables(tmp_path / "results.json")
