"""train-stability: a clean run, and injected graph reuse, NaN losses and a leak are
each detected and reported with their step."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
from keisei_plugin_train_memory.stability import (
    OnlineSlope,
    StabilitySettings,
    classify_error,
    rollout_stream,
    run_stability,
)
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.bench.probe_api import ProbeContext
from keisei_core.config.experiment import BenchSettings
from keisei_core.plugins import PluginHost

ACTIONS = 64
MIB = 1024 * 1024


class Small(ActorCriticMixin, nn.Module):
    observation_shape = (46, 9, 9)
    num_actions = ACTIONS

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(46 * 81, 32), nn.ReLU())
        self.policy = nn.Linear(32, ACTIONS)
        self.value = nn.Linear(32, 1)
        self.calls = 0

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        x = self.body(obs)
        return self.policy(x), self.value(x).squeeze(-1)


class CarriesGraph(Small):
    """The research stack's bug: state carried across steps without ``detach()``."""

    def __init__(self) -> None:
        super().__init__()
        self.memory: torch.Tensor | None = None

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, value = super().forward(obs)
        if self.memory is not None:
            value = value + self.memory.mean()
        self.memory = value  # should be value.detach()
        return logits, value


class TurnsNaN(Small):
    def __init__(self, from_call: int) -> None:
        super().__init__()
        self.from_call = from_call

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, value = super().forward(obs)
        if self.calls >= self.from_call:
            value = value * float("nan")
        return logits, value


class Leaks(Small):
    """Keeps 8 MiB per step alive, as a metrics list that is never trimmed would."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[torch.Tensor] = []

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.kept.append(torch.ones(2 * MIB))  # 2M float32 = 8 MiB, pages touched
        return super().forward(obs)


def _context(model: nn.Module, tmp_path: Path, batch: int = 8) -> ProbeContext:
    model.train()
    return ProbeContext(
        model=model,
        eager_model=model,
        model_name="test",
        model_options={},
        strategy="eager",
        batch_size=batch,
        device="cpu",
        dtype="float32",
        seed=0,
        settings=BenchSettings(),
        threads=1,
        scratch_dir=tmp_path,
        observation_shape=tuple(model.observation_shape),  # type: ignore[arg-type]
        num_actions=int(model.num_actions),
        training=True,
    )


FAST = StabilitySettings(steps=12, metrics_every=4, log_flush_every=2, warmup_steps=2)


def test_clean_run_is_stable_and_logs_in_batches(tmp_path: Path) -> None:
    result = run_stability(_context(Small(), tmp_path), FAST)
    extra = result.extra
    assert result.metric == "train-stability" and result.value == 12.0
    assert extra["stable"] is True and extra["error"] is None
    assert extra["nonfinite_losses"] == 0 and extra["leak_suspected"] is False
    assert extra["memory_measured_steps"] == 10
    # 12 steps, gathered every 4 -> 3 records, flushed 2 at a time -> 2 appends.
    assert extra["log_records"] == 3 and extra["log_flushes"] == 2
    lines = Path(extra["log_path"]).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [4, 8, 12]
    assert all(json.loads(line)["loss_mean"] is not None for line in lines)
    json.dumps(extra, allow_nan=False)


def test_graph_reuse_is_caught_and_reported(tmp_path: Path) -> None:
    result = run_stability(_context(CarriesGraph(), tmp_path), FAST)
    extra = result.extra
    assert extra["stable"] is False and extra["error_kind"] == "graph-reuse"
    assert extra["steps_completed"] == 1 and extra["error_step"] == 2
    assert "backward through the graph a second time" in extra["error"]
    assert result.value == 1.0


def test_nan_loss_is_detected_with_its_step(tmp_path: Path) -> None:
    result = run_stability(_context(TurnsNaN(from_call=6), tmp_path), FAST)
    extra = result.extra
    assert extra["stable"] is False and extra["error"] is None
    assert extra["first_nonfinite_step"] == 6 and extra["nonfinite_losses"] >= 1
    # Detected at the gathering after step 6 (step 8); training stops there.
    assert extra["steps_completed"] == 8
    json.dumps(extra, allow_nan=False)


def test_memory_leak_shows_as_a_positive_slope(tmp_path: Path) -> None:
    settings = StabilitySettings(steps=14, metrics_every=7, warmup_steps=2)
    result = run_stability(_context(Leaks(), tmp_path), settings)
    extra = result.extra
    assert extra["leak_suspected"] is True and extra["stable"] is False
    assert 4.0 < extra["memory_slope_mib_per_step"] < 16.0


def test_history_is_bounded(tmp_path: Path) -> None:
    settings = StabilitySettings(steps=12, metrics_every=2, history=2, warmup_steps=2)
    extra = run_stability(_context(Small(), tmp_path), settings).extra
    assert extra["log_records"] == 6 and extra["history_kept"] == 2
    assert [record["step"] for record in extra["history"]] == [10, 12]
    assert extra["last_metrics"]["step"] == 12


def test_rollouts_are_streamed_one_batch_at_a_time(tmp_path: Path) -> None:
    stream = rollout_stream(_context(Small(), tmp_path), steps=1000)
    assert inspect.isgenerator(stream)
    first, second = next(stream), next(stream)
    assert first.observations.shape == (8, 46, 9, 9)
    assert not torch.equal(first.observations, second.observations)


def test_model_metrics_are_gathered(tmp_path: Path) -> None:
    pytest.importorskip("keisei_plugin_research")
    from keisei_core.api import build_model

    torch.manual_seed(0)
    model = build_model("experts-with-ghosts-tiny", num_actions=ACTIONS)
    extra = run_stability(_context(model, tmp_path, batch=4), StabilitySettings(steps=4, metrics_every=2, warmup_steps=1)).extra
    assert extra["stable"] is True
    assert "moe/ghost_fraction" in extra["last_metrics"]


def test_helpers() -> None:
    slope = OnlineSlope()
    for x in range(10):
        slope.add(x, 5.0 + 3.0 * x)
    assert slope.slope() == pytest.approx(3.0) and slope.count == 10
    assert OnlineSlope().slope() == 0.0
    assert classify_error(RuntimeError("one of the variables needed for gradient computation has been modified by an inplace operation")) == "inplace-modification"
    assert classify_error(ValueError("other")) == "ValueError"


def test_registered_as_a_training_probe() -> None:
    host = PluginHost(env={"KEISEI_PLUGINS": "train-memory"}).load()
    spec = host.probes.get("train-stability")
    assert spec.needs_training and spec.unit == "steps"
    assert host.probes.get("train-memory").needs_training
    assert host.strategies.get("activation-checkpointing").kind == "transform"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_train_memory_child_does_not_inherit_the_parents_peak() -> None:
    from keisei_plugin_train_memory.train_memory import CHILD_MODULE

    from keisei_core.bench.child import run_child

    ballast = torch.ones(100 * MIB)  # 400 MiB resident in this (parent) process
    task = {
        "model": "actor-critic", "options": {"conv_channels": 4, "num_actions": 300}, "strategy": "eager",
        "batch_size": 4, "device": "cpu", "dtype": "float32", "training": True, "seed": 0, "threads": 1,
        "plugins": [], "steps": 2,
    }
    parent_rss = int(next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    assert parent_rss > ballast.numel() * 4
    result = run_child(task, timeout=300, module=CHILD_MODULE)
    # getrusage's peak would start at the parent's resident size (it survives fork + exec).
    assert result["rss_peak_bytes"] < parent_rss
    assert result["saved_for_backward_bytes"] > 0
