"""The ``se-op`` probe and the ``python -m keisei_plugin_fused_se.bench`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from keisei_plugin_fused_se import bench
from keisei_plugin_fused_se.probe import run_se_op
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.bench.probe_api import ProbeContext, ProbeUnsupported
from keisei_core.config.experiment import BenchSettings
from keisei_core.nn.se import SqueezeExcitationFiLM

FAST = BenchSettings(warmup_seconds=0.0, min_samples=3, max_samples=5, time_budget_seconds=0.05, target_iqr_ratio=0.5)


class TinyTower(ActorCriticMixin, nn.Module):
    observation_shape = (3, 7, 7)
    num_actions = 5

    def __init__(self, with_se: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.se = SqueezeExcitationFiLM(8, 3) if with_se else None
        self.head = nn.Linear(8 * 49, 6)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.stem(obs))
        y = self.branch(x)
        x = self.se(y, x) if self.se is not None else torch.relu(y + x)
        out = self.head(x.flatten(1))
        return out[:, :5], out[:, 5]


def context(model: nn.Module, tmp_path: Path, strategy: str = "eager", cache: dict | None = None) -> ProbeContext:
    return ProbeContext(
        model=model, eager_model=model, model_name="tiny", model_options={}, strategy=strategy,
        batch_size=4, device="cpu", dtype="float32", seed=0, settings=FAST, threads=1,
        scratch_dir=tmp_path, observation_shape=(3, 7, 7), num_actions=5,
        run_cache=cache if cache is not None else {},
    )  # fmt: skip


def test_model_without_se_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnsupported, match="no fusable SE unit"):
        run_se_op(context(TinyTower(with_se=False), tmp_path))


@pytest.mark.slow
def test_probe_times_three_forms_and_reuses_across_strategies(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyTower().eval()
    cache: dict = {}
    result = run_se_op(context(model, tmp_path, cache=cache))
    assert result.metric == "se-op" and result.unit == "x" and result.higher_is_better
    assert result.value is not None and result.value > 0
    extra = result.extra
    assert extra["shape"] == [4, 8, 7, 7] and extra["film"] and extra["hidden"] == 3
    for mode in ("forward", "train"):
        for form in ("eager", "compiled", "fused"):
            assert extra[mode][f"{form}_us"] > 0
    assert extra["max_abs_difference"] < 1e-5
    for mode in ("forward", "train"):
        faults = extra["page_faults_per_call"][mode]
        assert set(faults) == {"eager", "compiled", "fused"} and min(faults.values()) >= 0
    again = run_se_op(context(model, tmp_path, strategy="fused-se", cache=cache))
    assert again.value == result.value and again.extra["reused_for_strategy"] == "fused-se"


def test_page_fault_count_sees_first_touches() -> None:
    """A call that fills a fresh 64 MB buffer (above glibc's largest mmap threshold, so
    new pages every call) faults on its 16,384 pages; a call that touches nothing, on
    none worth counting."""
    from keisei_plugin_fused_se.unit_timing import page_faults_per_call

    faults = page_faults_per_call({"fills": lambda: bytearray(b"\1") * (64 << 20), "idle": lambda: None}, rounds=3)
    assert faults is not None
    assert faults["fills"] >= 10_000
    assert faults["idle"] < 100


def test_bench_command_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--batch", "0"]) == 2
    assert "batch, channels and board must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_command_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "se.json"
    code = bench.main(
        # the probe test's unit and shapes, so inductor's cache serves the compiled form
        ["--batch", "4", "--channels", "8", "--board", "7", "--se-ratio", "0.375", "--film", "--mode", "forward",
         "--budget", "0.05", "--max-samples", "5", "--threads", "1", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "fused/eager" in text and "forward" in text
    assert "minor page faults per forward call" in text
    assert out.exists()
