"""``keisei compare``: regression logic on synthetic results files, and the CLI's exit codes."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.bench.compare import (
    bootstrap_ratio_ci,
    compare_cells,
    compare_results,
    is_regression,
    mann_whitney_method,
    mann_whitney_p,
)
from keisei_core.bench.probe_api import ProbeResult
from keisei_core.bench.results import CellRecord, Results, ResultsError, load_results
from keisei_core.cli.main import main
from keisei_core.stats import summarize


def _cell(probe: str, median: float, *, spread: float = 0.02, higher: bool = True, n: int = 30,
          status: str = "ok", seed: int = 0, batch: int = 64, samples: bool = True) -> CellRecord:
    rng = random.Random(seed)
    result = None
    if status == "ok":
        stats = summarize([median * rng.uniform(1 - spread, 1 + spread) for _ in range(n)]) if samples else None
        result = ProbeResult(probe, "samples/s" if higher else "ms", stats.median if stats else median, stats,
                             higher_is_better=higher)
    return CellRecord(
        model="actor-critic", model_label="actor-critic", model_options={}, strategy="eager", probe=probe,
        batch_size=batch, device="cpu", dtype="float32", status=status,
        reason=None if status == "ok" else "RuntimeError: x", result=result,
    )


def _results(path: Path, cells: list[CellRecord], threads: int = 2) -> Path:
    Results(run={"name": path.stem, "status": "complete"}, manifest={"torch": "2.13.0", "threads": threads},
            cells=cells, path=path).save()
    return path


def test_bootstrap_interval_covers_the_true_ratio() -> None:
    rng = random.Random(0)
    old = [100 * rng.uniform(0.95, 1.05) for _ in range(40)]
    new = [80 * rng.uniform(0.95, 1.05) for _ in range(40)]
    low, high = bootstrap_ratio_ci(old, new)
    assert low < 0.8 < high and high - low < 0.1
    assert bootstrap_ratio_ci(old, new) == (low, high)  # seeded: reproducible


def test_significant_rate_drop_beyond_threshold_is_a_regression() -> None:
    c = compare_cells(_cell("throughput", 100, seed=1), _cell("throughput", 80, seed=2), threshold=5)
    assert c.verdict == "REGRESSION" and c.significant and is_regression(c)
    assert c.worse_percent == pytest.approx(20, abs=2)
    assert c.ci is not None and c.ci[1] < 1.0


def test_latency_increase_is_worse_and_decrease_is_better() -> None:
    worse = compare_cells(_cell("latency", 10, higher=False, seed=1), _cell("latency", 12, higher=False, seed=2), threshold=5)
    assert worse.verdict == "REGRESSION"
    better = compare_cells(_cell("latency", 10, higher=False, seed=1), _cell("latency", 8, higher=False, seed=2), threshold=5)
    assert better.verdict == "improved" and not is_regression(better)


def test_small_or_noisy_changes_do_not_fail() -> None:
    within = compare_cells(_cell("throughput", 100, seed=1), _cell("throughput", 97, seed=2), threshold=5)
    assert within.verdict in ("worse (within threshold)", "no significant change")
    assert not is_regression(within)
    # Medians 100 vs 85, but the samples overlap almost completely.
    old, new = _cell("throughput", 1), _cell("throughput", 1)
    old = attrs.evolve(old, result=attrs.evolve(old.result, value=100, statistics=summarize([60, 140, 80, 120, 100, 70, 130])))
    new = attrs.evolve(new, result=attrs.evolve(new.result, value=85, statistics=summarize([55, 125, 75, 110, 85, 65, 120])))
    noisy = compare_cells(old, new, threshold=5)
    assert noisy.p_value is not None and noisy.p_value > 0.3
    assert noisy.verdict == "no significant change" and not is_regression(noisy)


def test_mann_whitney_matches_known_values() -> None:
    from scipy import stats

    # Complete separation of 10 vs 10, no ties: the exact p is 2 / C(20, 10).
    assert mann_whitney_p(list(range(10)), list(range(10, 20))) == pytest.approx(2 / math.comb(20, 10), rel=1e-9)
    assert mann_whitney_method(list(range(10)), list(range(10, 20))) == "exact"
    # Ties, or more than 20 samples a side: scipy's "auto", the normal approximation with
    # tie and continuity corrections at these sizes (what compare computed by hand before).
    assert mann_whitney_method([1.0, 2.0], [2.0, 3.0]) == "auto"
    assert mann_whitney_method(list(range(21)), list(range(21, 42))) == "auto"
    tied = [0.0, *range(1, 10)], [9.0, *range(11, 20)]  # one value on both sides
    assert mann_whitney_p(*tied) == pytest.approx(
        stats.mannwhitneyu(*tied, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue, rel=1e-12
    )
    assert mann_whitney_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert mann_whitney_p([2.0] * 5, [2.0] * 5) == 1.0  # all equal: no evidence either way


def test_compare_agrees_with_scipy_on_known_samples() -> None:
    """compare's p-value, interval and verdict are scipy's own numbers on the stored samples."""
    from scipy import stats

    old, new = _cell("throughput", 100, seed=1, n=12), _cell("throughput", 80, seed=2, n=12)
    assert old.statistics is not None and new.statistics is not None
    a, b = np.asarray(old.statistics.samples), np.asarray(new.statistics.samples)
    comparison = compare_cells(old, new, threshold=5)
    expected_p = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue
    assert comparison.p_value == pytest.approx(expected_p, rel=1e-12)
    interval = stats.bootstrap(
        (a, b), lambda x, y, axis: np.median(y, axis=axis) / np.median(x, axis=axis),
        n_resamples=2000, method="percentile", rng=np.random.default_rng(0), vectorized=True,
    ).confidence_interval
    assert comparison.ci == pytest.approx((interval.low, interval.high), rel=1e-12)
    # 12 vs 12 fully separated: exact p = 2 / C(24, 12), far under 0.05; the interval below 1.
    assert expected_p == pytest.approx(2 / math.comb(24, 12), rel=1e-9)
    assert comparison.verdict == "REGRESSION"
    # Overlapping samples: scipy's p is large, and compare calls it no significant change.
    same = compare_cells(_cell("throughput", 100, seed=1, n=12), _cell("throughput", 100, seed=2, n=12), threshold=5)
    assert same.p_value is not None and same.p_value > 0.05 and same.verdict == "no significant change"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.5, 2.0), min_size=3, max_size=30),
    st.lists(st.floats(0.5, 2.0), min_size=3, max_size=30),
)
def test_mann_whitney_is_scipys_for_any_samples(old: list[float], new: list[float]) -> None:
    from scipy import stats

    got = mann_whitney_p(old, new)
    assert 0.0 <= got <= 1.0
    if len(set(old)) == 1 and set(old) == set(new):
        assert got == 1.0
        return
    expected = stats.mannwhitneyu(old, new, alternative="two-sided", method=mann_whitney_method(old, new)).pvalue
    assert got == pytest.approx(float(expected), rel=1e-12, abs=1e-15)


def test_single_values_and_status_changes() -> None:
    flops = compare_cells(_cell("flops", 100, samples=False, higher=False), _cell("flops", 120, samples=False, higher=False), threshold=5)
    assert flops.ci is None and flops.verdict == "REGRESSION"
    failed = compare_cells(_cell("throughput", 100), _cell("throughput", 0, status="failed"), threshold=5)
    assert failed.verdict == "now failed" and is_regression(failed)
    old = Results(run={}, manifest={}, cells=[_cell("throughput", 1, batch=1)])
    new = Results(run={}, manifest={}, cells=[_cell("throughput", 1, batch=2)])
    assert [c.verdict for c in compare_results(old, new, threshold=5)] == ["removed", "added"]


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _results(tmp_path / "old.json", [_cell("throughput", 100, seed=1), _cell("latency", 5, higher=False, seed=3)])
    same = _results(tmp_path / "same.json", [_cell("throughput", 100, seed=2), _cell("latency", 5, higher=False, seed=4)])
    slow = _results(tmp_path / "slow.json", [_cell("throughput", 70, seed=2), _cell("latency", 5, higher=False, seed=4)], threads=1)
    assert main(["compare", str(old), str(same)]) == 0
    assert main(["compare", str(old), str(slow)]) == 1
    captured = capsys.readouterr()
    assert "REGRESSION" in captured.out and "environments differ (threads: 2 -> 1)" in captured.err
    # A threshold above the drop lets it pass.
    assert main(["compare", str(old), str(slow), "--fail-above", "40"]) == 0
    capsys.readouterr()
    assert main(["compare", str(old), str(slow), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == 1 and data["cells"][0]["verdict"] == "REGRESSION"


def test_bad_results_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _results(tmp_path / "good.json", [_cell("throughput", 1)])
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"cells": []}')
    future = json.loads(good.read_text())
    future["schema_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(future))
    for name, message in [("missing.json", "no such results file"), ("junk.json", "not a JSON results file"),
                          ("other.json", "not a keisei results file"), ("future.json", "schema version 99")]:
        assert main(["compare", str(good), str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert load_results(good).cells[0].value is not None


# The results file's cell layout: the record's fields with the result's flattened in place.
CELL_LAYOUT = ["model", "model_label", "model_options", "strategy", "probe", "batch_size", "device", "dtype",
               "status", "reason", "metric", "unit", "value", "higher_is_better", "statistics", "extra",
               "compile_report", "speed_check", "warnings", "duration_seconds"]


def test_cells_keep_the_file_layout_and_read_back_equal(tmp_path: Path) -> None:
    from keisei_core.compile.report import CompileReport, SpeedCheck
    from keisei_core.statuses import CompileStatus

    report = CompileReport("inductor", CompileStatus.COMPILED, compile_seconds=3.5,
                           speeds=(SpeedCheck(64, 30, 2.0, 1.0, 0.1, 0.1, 2.0, 1.9, 2.1),))
    speed_check = {"batch_size": 64, "speedup": 2.0, "verdict": "faster"}
    compiled = attrs.evolve(_cell("throughput", 100), strategy="inductor", compile_report=report, warnings=["w"],
                            speed_check=speed_check, duration_seconds=1.5, model_options={"depth": 2})
    failed = attrs.evolve(_cell("throughput", 1, status="failed"), compile_report=report)
    single = attrs.evolve(_cell("flops", 5, samples=False), result=ProbeResult("flops", "FLOP", 5.0, extra={"k": [1]}))
    cells = [compiled, failed, single]
    for cell in cells:
        assert list(cell.to_dict()) == CELL_LAYOUT
    data = compiled.to_dict()
    assert compiled.result is not None and compiled.result.statistics is not None
    assert data["metric"] == "throughput" and data["unit"] == "samples/s" and data["higher_is_better"] is True
    assert data["value"] == compiled.result.value and data["extra"] == {}
    assert data["statistics"] == compiled.result.statistics.to_dict()
    assert data["compile_report"]["status"] == "compiled" and data["compile_report"]["speeds"][0]["verdict"] == "faster"
    assert data["speed_check"] == speed_check and data["warnings"] == ["w"] and data["duration_seconds"] == 1.5
    no_result = failed.to_dict()
    assert {key: no_result[key] for key in CELL_LAYOUT[10:16]} == {
        "metric": None, "unit": None, "value": None, "higher_is_better": None, "statistics": None, "extra": {}}
    assert single.to_dict()["statistics"] is None and single.to_dict()["extra"] == {"k": [1]}

    path = _results(tmp_path / "r.json", cells)
    document = json.loads(path.read_text())
    assert list(document) == ["schema", "schema_version", "run", "manifest", "calibration", "cells"]
    assert document["cells"] == [json.loads(json.dumps(cell.to_dict())) for cell in cells]
    again = load_results(path)
    assert again.cells == cells  # typed again: the result, its statistics and the compile report
    assert again.cells[0].compile_report == report and again.cells[1].result is None
    again.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_cells_of_older_files_read_with_defaults_and_bad_ones_are_one_line_errors(tmp_path: Path) -> None:
    old = {"model": "actor-critic", "strategy": "eager", "probe": "flops", "batch_size": 4, "status": "ok",
           "metric": "flops", "value": 7, "future_key": "ignored"}
    cell = CellRecord.from_dict(old)
    assert (cell.model_label, cell.model_options, cell.device, cell.dtype) == ("actor-critic", {}, "cpu", "float32")
    assert cell.warnings == [] and cell.duration_seconds == 0.0 and cell.compile_report is None
    assert cell.result == ProbeResult("flops", "", 7.0, None, higher_is_better=True, extra={})
    skipped = CellRecord.from_dict({**old, "status": "skipped", "model_label": None, "warnings": None})
    assert skipped.result is None and skipped.model_label == "actor-critic" and skipped.warnings == []

    path = _results(tmp_path / "r.json", [_cell("throughput", 1)])
    data = json.loads(path.read_text())
    data["cells"][0]["batch_size"] = "four"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"malformed cell entry \(cells\[0\]\.batch_size: expected an integer"):
        load_results(path)
