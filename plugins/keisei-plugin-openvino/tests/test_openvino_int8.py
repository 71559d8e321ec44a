"""``openvino-int8``: NNCF quantizes the converted model (FakeQuantize operations in the
cached IR), the result is judged by the policy-level checks, and a second apply loads
the quantized IR from the cache instead of quantizing again."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from keisei_plugin_openvino.int8 import (
    CALIBRATION_POSITIONS,
    OpenVinoInt8Runner,
    apply_openvino_int8,
    calibration_positions,
    quantize_model,
)
from keisei_plugin_openvino.runtime import OpenVinoRunner

from keisei_core.api import build_model
from keisei_core.observations import make_observations
from keisei_core.plugins import PluginHost
from keisei_core.specs import StrategyContext

from .test_openvino_strategy import SMALL, randomise_batchnorm, runner_of

pytest.importorskip("nncf")


def test_registered_with_the_int8_precision() -> None:
    registration = PluginHost().load().strategies.registration("openvino-int8")
    spec = registration.spec
    assert registration.distribution == "keisei-plugin-openvino"
    assert spec.kind == "compiler" and spec.training is False and spec.precision == "int8"
    assert spec.devices == {"cpu"} and spec.dtypes == {"float32"}


def test_calibration_positions_are_observation_like_and_fixed() -> None:
    positions = calibration_positions((46, 9, 9))
    assert positions.shape == (CALIBRATION_POSITIONS, 46, 9, 9) and bool(torch.isfinite(positions).all())
    assert torch.equal(positions, calibration_positions((46, 9, 9)))  # the cache key depends on them


def test_the_ir_key_names_the_quantizer(tmp_path: Path) -> None:
    context = StrategyContext(cache_dir=tmp_path, composition=("openvino-int8",))
    example = make_observations(2, 46, 9)
    runner = OpenVinoInt8Runner(context, "openvino-int8", "f32", (46, 9, 9), (), example, 1)
    extra = runner.key_extra()
    assert set(extra) == {"nncf", "preset", "calibration"} and len(extra["calibration"]) == 64
    assert OpenVinoRunner(context, "openvino", "f32", (46, 9, 9), (), example, 1).key_extra() == {}
    twin = copy.deepcopy(runner)  # a copy that loads new weights must quantize them too
    assert type(twin) is OpenVinoInt8Runner and twin.key_extra() == extra
    assert type(pickle.loads(pickle.dumps(runner))) is OpenVinoInt8Runner


def test_nncf_progress_bars_stay_off_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """stdout is the data of `keisei tune --json`: NNCF's progress bars go to stderr."""
    import openvino

    net = torch.nn.Sequential(torch.nn.Conv2d(46, 8, 3, padding=1), torch.nn.ReLU()).eval()
    converted = openvino.convert_model(net, example_input=torch.zeros(1, 46, 9, 9))
    quantized = quantize_model(converted, calibration_positions((46, 9, 9)))
    assert any(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    captured = capsys.readouterr()
    assert captured.out == "", captured.out[:200]


@pytest.mark.slow
def test_nncf_quantizes_and_the_policy_checks_judge_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from keisei_core.compile import compile_model

    eager = randomise_batchnorm(build_model("actor-critic", **SMALL))
    compiled, report = compile_model(eager, "openvino-int8", batch_sizes=(1, 8))
    # NNCF's progress bars must not reach stdout (the data of `keisei tune --json`).
    assert capsys.readouterr().out == ""
    assert report.precision == "int8" and report.checks == () and report.tolerance is None
    assert len(report.policy_checks) == 16, report.summary()  # 4 metrics at 1, 8 and off-bucket 3, 33
    assert report.notes["nncf_version"] and report.notes["inference_precision"] == "f32"
    ir = Path(report.notes["artifact"])
    assert ir.parent.name == "openvino-int8" and "FakeQuantize" in ir.read_text()
    if report.status == "compiled":
        assert all(check.passed for check in report.policy_checks)
    else:  # a miss must be a policy miss, never a crash
        assert report.status == "fallback" and compiled is eager, report.summary()
        assert "policy checks miss the int8 thresholds" in (report.reason or ""), report.reason

    # A second apply with the same cache: the quantized IR is loaded, NNCF does not run.
    context = StrategyContext(
        model_name=getattr(eager, "keisei_model_name", None),
        model_options=getattr(eager, "keisei_model_options", None),
        cache_dir=ir.parents[1], composition=("openvino-int8",),
    )
    again = apply_openvino_int8(copy.deepcopy(eager), context)
    assert context.notes["warm_start"] is True and context.notes["artifact"] == str(ir)
    assert runner_of(again).conversions == 0
    obs = make_observations(4, 46, 9, seed=3)
    with torch.no_grad():
        quantized, exact = again(obs)[0], eager(obs)[0]
    assert float((quantized - exact).abs().max()) > 0  # int8 really rounds
