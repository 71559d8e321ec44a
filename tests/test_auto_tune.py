"""``auto`` / ``keisei tune``: registry-driven search, per-bucket choice, dispatch, cache.

The model here wastes time in eager unless a plain attribute tells it not to; the
strategy ``skip-waste`` sets it (same math, several times faster), ``wrong-fast`` sets
it and shifts the logits (faster, wrong), ``slow`` is correct and slower. A separate
local plugin (``-p``) brings another fast-and-wrong strategy: the choice must not move.
No Inductor: the suite takes seconds.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.cli.main import main
from keisei_core.compile import compile_model
from keisei_core.compile.auto import (
    Candidate,
    CandidateSpeed,
    Choice,
    choose,
    dispatching_model,
    single_candidates,
    tune,
)
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.plugins import PluginHost

PLUGIN = '''
import time
import torch
from torch import nn
from keisei_core import ActorCriticMixin, ModelSpec, StrategySpec, hookimpl
from keisei_core.compile import add_forward_wrapper


class WasteNet(ActorCriticMixin, nn.Module):
    observation_shape = (4, 3, 3)
    num_actions = 200
    keisei_model_name = "waste-net"
    fast = False

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.policy = nn.Linear(72, 200)
        self.value = nn.Linear(72, 1)

    def forward(self, obs):
        h = torch.relu(self.conv(obs)).flatten(1)
        if not self.fast:
            time.sleep(0.1)  # what a slow eager path costs (far above any noise, even on a busy machine)
        return self.policy(h), self.value(h).squeeze(-1)


def build(options):
    return WasteNet()


def skip_waste(model, context):
    model.fast = True
    return model


def shift(module, inner, obs):
    logits, value = inner(obs)
    return logits + 0.5, value


def wrong_fast(model, context):
    model.fast = True
    return add_forward_wrapper(model, shift)


def dawdle(module, inner, obs):
    time.sleep(0.15)
    return inner(obs)


def slow(model, context):
    return add_forward_wrapper(model, dawdle)


@hookimpl
def keisei_register_models(register):
    register(ModelSpec("waste-net", build))


@hookimpl
def keisei_register_compile_strategies(register):
    register(StrategySpec("skip-waste", skip_waste, kind="transform"))
    register(StrategySpec("wrong-fast", wrong_fast, kind="compiler"))
    register(StrategySpec("slow", slow, kind="compiler"))
'''

WRONG_PLUGIN = '''
from keisei_core import StrategySpec, hookimpl
from keisei_core.compile import add_forward_wrapper


def zero_value(module, inner, obs):
    logits, value = inner(obs)
    return logits, value * 0


def apply(model, context):
    model.fast = True  # as fast as the right one, but its values are wrong
    return add_forward_wrapper(model, zero_value)


@hookimpl
def keisei_register_compile_strategies(register):
    register(StrategySpec("sneaky", apply, kind="compiler"))
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("auto-plugins")
    (folder / "waste_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (folder / "sneaky_plugin.py").write_text(textwrap.dedent(WRONG_PLUGIN))
    return folder / "waste_plugin.py", folder / "sneaky_plugin.py"


def _host(*files: Path) -> PluginHost:
    return PluginHost([str(f) for f in files], include_installed=False, env={}).load()


def _model(host: PluginHost) -> Any:
    from keisei_core.models import build_from_spec, resolve_options

    spec = host.models.get("waste-net")
    torch.manual_seed(0)  # as keisei tune builds it (--seed 0)
    return build_from_spec(spec, resolve_options(spec, {}, where="test"))


FAST = {"speed_seconds": 0.3, "sampling_draws": 128}


@pytest.fixture(scope="module")
def tuned(plugins: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, Path]:
    host = _host(plugins[0])
    cache = tmp_path_factory.mktemp("auto-cache")
    model = _model(host)
    compiled, report = tune(model, batch_sizes=(1, 16), host=host, cache_dir=cache, **FAST)
    return model, compiled, report, cache


def test_auto_picks_the_fastest_validated_and_never_a_wrong_one(tuned: Any) -> None:
    _model, _compiled, report, _cache = tuned
    by_name = {c.strategy: c for c in report.candidates}
    assert by_name["wrong-fast"].status == "fallback" and "differ from eager" in (by_name["wrong-fast"].reason or "")
    assert by_name["slow"].status == "validated"
    assert by_name["skip-waste"].status == "validated"
    assert all(s.verdict == "slower" for s in by_name["slow"].speeds)
    # stage 2: the validated transform with the validated compilers only
    assert "skip-waste+slow" in by_name and "skip-waste+wrong-fast" not in by_name
    assert [(c.batch_size, c.strategy) for c in report.choices] == [(1, "skip-waste"), (16, "skip-waste")]
    assert all(c.speedup > 1 for c in report.choices)
    assert not report.reused


def test_the_tuned_model_dispatches_runs_the_winner_and_keeps_eager_keys(tuned: Any) -> None:
    model, compiled, _report, _cache = tuned
    assert list(compiled.state_dict()) == list(model.state_dict())
    dispatch = compiled.keisei_auto_dispatch
    obs, masks = make_observations(5, 4, 3, seed=1), make_legal_masks(5, 200, seed=1)
    compiled.eval()
    model.eval()
    with torch.no_grad():
        action, _log_prob, value = compiled.get_action_and_value(obs, masks, deterministic=True)
        eager_action, _eager_log_prob, eager_value = model.get_action_and_value(obs, masks, deterministic=True)
    assert dispatch.calls.get("skip-waste", 0) >= 1, "the PPO method ran the winner"
    torch.testing.assert_close(value, eager_value)
    torch.testing.assert_close(action, eager_action)
    # New weights through the tuned model reach the winner.
    torch.manual_seed(5)
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in model.state_dict().items()}
    compiled.load_state_dict(state)
    reference = type(model)()
    reference.load_state_dict(state)
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(obs), reference(obs))
    compiled.load_state_dict(model.state_dict())


def test_a_second_tune_reuses_the_cached_decision(tuned: Any, plugins: tuple[Path, Path]) -> None:
    model, _compiled, first, cache = tuned
    host = _host(plugins[0])
    again, report = tune(model, batch_sizes=(1, 16), host=host, cache_dir=cache, **FAST)
    assert report.reused and report.key == first.key
    assert report.choices == first.choices
    assert report.tune_seconds < first.tune_seconds
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(make_observations(2, 4, 3)), model.eval()(make_observations(2, 4, 3)))


@pytest.mark.slow  # a second full tune (a new candidate set is a new key)
def test_a_wrong_local_plugin_does_not_change_the_choice(tuned: Any, plugins: tuple[Path, Path]) -> None:
    model, _compiled, first, cache = tuned
    host = _host(*plugins)
    _again, report = tune(model, batch_sizes=(1, 16), host=host, cache_dir=cache, **FAST)
    assert not report.reused, "a new candidate set is a new key"
    sneaky = next(c for c in report.candidates if c.strategy == "sneaky")
    assert sneaky.status == "fallback"
    assert [c.strategy for c in report.choices] == [c.strategy for c in first.choices]


def test_choose_takes_the_fastest_clearly_faster_candidate_per_size() -> None:
    def speed(size: int, ratio: float, spread: float = 0.05) -> CandidateSpeed:
        return CandidateSpeed(size, ratio, ratio - spread, ratio + spread, 1.0, 1 / ratio, 0.1, 0.1, 5,
                              "faster" if ratio - spread > 1 else ("slower" if ratio + spread < 1 else "same"))

    candidates = [
        Candidate("a", 1, "validated", speeds=(speed(1, 2.0), speed(64, 1.02))),
        Candidate("b", 1, "validated", speeds=(speed(1, 1.5), speed(64, 1.5))),
        Candidate("c", 1, "fallback", "wrong", speeds=(speed(1, 9.0), speed(64, 9.0))),
        Candidate("d", 1, "validated", speeds=(speed(1, 0.5), speed(64, 1.04, spread=0.2))),
    ]
    assert choose(candidates, (1, 64)) == (Choice(1, "a", 2.0), Choice(64, "b", 1.5))
    assert choose(candidates[2:], (1, 64)) == (Choice(1, "eager", 1.0), Choice(64, "eager", 1.0))


def test_buckets_go_to_the_smallest_declared_size_at_least_the_call(plugins: tuple[Path, Path]) -> None:
    model = _model(_host(plugins[0]))
    fast = type(model)()
    fast.load_state_dict(model.state_dict())
    fast.fast = True
    fast.train()  # a winner handed over in train mode still acts in eval mode
    tuned = dispatching_model(model, (Choice(1, "eager", 1.0), Choice(8, "x", 2.0)), {"x": fast}).eval()
    assert not fast.training
    dispatch = tuned.keisei_auto_dispatch
    with torch.no_grad():
        for batch in (1, 2, 8, 9, 40):
            tuned(make_observations(batch, 4, 3))
    assert dispatch.calls == {"x": 4}
    tuned.train()
    tuned(make_observations(4, 4, 3))
    assert dispatch.calls == {"x": 4}, "train mode runs eager (gradients reach the auto model's parameters)"


@pytest.mark.slow  # a full tune through compile_model, then the CLI
def test_compile_model_auto_and_the_tune_cli(plugins: tuple[Path, Path], tmp_path: Path, capsys: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEISEI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KEISEI_PLUGINS", "")  # installed plugins (Inductor...) stay out: seconds, not minutes
    host = _host(plugins[0])
    _compiled, report = compile_model(_model(host), "auto", batch_sizes=(1, 16), host=host, sampling_draws=128,
                                      speed_seconds=0.3)
    assert report.strategy == "auto" and report.status == "compiled" and report.auto is not None
    assert "skip-waste" in report.notes["auto_choices"]
    code = main(["-p", str(plugins[0]), "tune", "waste-net", "--batch-sizes", "1,16", "--json",
                 "--speed-seconds", "0.3", "--out", str(tmp_path / "out")])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["strategy"] for c in data["choices"]] == ["skip-waste", "skip-waste"]
    assert {c["strategy"] for c in data["candidates"]} >= {"skip-waste", "slow", "wrong-fast"}
    assert json.loads((tmp_path / "out" / "tune.json").read_text())["choices"] == data["choices"]
    assert data["reused"], "same model, weights, torch, CPU and candidates: compile_model's decision is reused"
    assert main(["-p", str(plugins[0]), "tune", "waste-net", "--max-compositions", "-1"]) == 2


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_the_tuned_model_computes_what_eager_computes(tuned: Any, batch: int, seed: int) -> None:
    model, compiled, _report, _cache = tuned
    obs, masks = make_observations(batch, 4, 3, seed=seed), make_legal_masks(batch, 200, seed=seed)
    compiled.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(obs), model(obs))
        got = compiled.evaluate_actions(obs, masks.float().argmax(-1), masks)
        want = model.evaluate_actions(obs, masks.float().argmax(-1), masks)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


TRAIN_ONLY_PLUGIN = '''
from keisei_core import StrategySpec, hookimpl


def same(model, context):
    return model


@hookimpl
def keisei_register_compile_strategies(register):
    register(StrategySpec("train-trick", same, kind="transform", train_only=True))
    register(StrategySpec("plain-trick", same, kind="transform"))
    register(StrategySpec("half-trick", same, kind="transform", precision="bfloat16"))
'''


def test_train_only_strategies_are_skipped_with_the_reason(tmp_path: Path) -> None:
    """auto tunes acting: a strategy that changes only training runs eager's code there."""
    (tmp_path / "train_only_plugin.py").write_text(textwrap.dedent(TRAIN_ONLY_PLUGIN))
    runnable, skipped = single_candidates(_host(tmp_path / "train_only_plugin.py"), "cpu", "float32")
    assert "plain-trick" in [spec.name for spec in runnable]
    assert "train-trick" not in [spec.name for spec in runnable]
    (train_trick,) = [c for c in skipped if c.strategy == "train-trick"]
    assert train_trick.status == "skipped" and "train_only" in train_trick.reason


@pytest.mark.parametrize("native", [False, True])
def test_emulated_precisions_are_skipped_where_the_cpu_lacks_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """On a CPU without native bf16 (AVX2 only) oneDNN emulates it, 33x slower: auto skips
    bf16 candidates there with the reason, and tries them where bf16 is native."""
    from keisei_core.compile import hardware

    monkeypatch.setitem(hardware.NATIVE_ON_CPU, "bfloat16", lambda: native)
    (tmp_path / "train_only_plugin.py").write_text(textwrap.dedent(TRAIN_ONLY_PLUGIN))
    runnable, skipped = single_candidates(_host(tmp_path / "train_only_plugin.py"), "cpu", "float32")
    names = [spec.name for spec in runnable]
    if native:
        assert "half-trick" in names
    else:
        (half,) = [c for c in skipped if c.strategy == "half-trick"]
        assert "half-trick" not in names and "no native bfloat16" in (half.reason or "")
