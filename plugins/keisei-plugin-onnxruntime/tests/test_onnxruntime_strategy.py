"""The ``onnxruntime`` strategy: equivalence with eager, PPO methods through the session,
unchanged state_dict keys, warm start, cache integrity, and refusal of training.

Tolerance: atol = rtol = 1e-4 in float32. Both sides compute in fp32; they differ only in
summation order (MLAS vs oneDNN kernels) and in ONNX Runtime folding BatchNorm into the
preceding conv, which reassociates products. For these reductions (at most a few thousand
terms of O(1) values) that moves results by ~1e-6..1e-5, so 1e-4 leaves headroom on any
CPU, while real defects (a missed BN, wrong weights, a baked-in batch size) are off by
1e-2 or more. BN statistics are randomised so that folding is actually exercised.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from keisei_plugin_onnxruntime import export as export_module
from keisei_plugin_onnxruntime.errors import InferenceOnlyError, StaleWeightsError
from keisei_plugin_onnxruntime.strategy import apply_onnxruntime
from torch import nn

from keisei_core.api import build_model
from keisei_core.errors import InputError, KeiseiError
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.plugins import PluginHost
from keisei_core.specs import StrategyContext
from keisei_core.testing.acting import assert_acts_like, randomise_batchnorm

ATOL = RTOL = 1e-4
SMALL = {"conv_channels": 4, "num_actions": 100}
# restower-small comes from another distribution: an optional extra of these tests.
HAVE_RESTOWER = importlib.util.find_spec("keisei_plugin_restower") is not None


def compile_copy(eager: nn.Module, cache_dir: Path | None = None) -> tuple[nn.Module, StrategyContext]:
    context = StrategyContext(
        model_name=getattr(eager, "keisei_model_name", None),
        model_options=getattr(eager, "keisei_model_options", None),
    )
    if cache_dir is not None:
        context.cache_dir = cache_dir
    return apply_onnxruntime(copy.deepcopy(eager), context), context


def count_session_runs(monkeypatch: pytest.MonkeyPatch, compiled: nn.Module) -> list[int]:
    session = compiled.forward.session  # type: ignore[union-attr]
    calls: list[int] = []
    real_run = session.run

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(session, "run", counting_run)
    return calls


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


def assert_equivalent(eager: nn.Module, compiled: nn.Module, batch: int, seed: int = 0) -> None:
    """forward, get_action_and_value(deterministic, masked) and evaluate_actions agree."""
    assert_acts_like(eager, compiled, batch=batch, seed=seed, atol=ATOL, rtol=RTOL)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def pair(cache_dir: Path) -> tuple[nn.Module, nn.Module, StrategyContext]:
    """One cold export shared by the module: (eager, compiled, its context)."""
    eager = build_model("actor-critic", **SMALL).eval()
    compiled, context = compile_copy(eager, cache_dir)
    return eager, compiled, context


def test_registered_through_the_entry_point() -> None:
    host = PluginHost().load()
    registration = host.strategies.registration("onnxruntime")
    spec = registration.spec
    assert registration.distribution == "keisei-plugin-onnxruntime"
    assert spec.kind == "compiler" and spec.training is False
    assert spec.devices == {"cpu"} and spec.dtypes == {"float32"}


def test_entry_point_module_imports_neither_torch_nor_onnxruntime() -> None:
    code = (
        "import sys, keisei_plugin_onnxruntime.plugin; "
        "heavy = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cold_export_is_recorded(pair: tuple[nn.Module, nn.Module, StrategyContext]) -> None:
    _, _, context = pair
    notes = context.notes
    assert notes["warm_start"] is False
    assert Path(notes["artifact"]).is_file() and Path(notes["artifact"]).suffix == ".onnx"
    assert notes["export_seconds"] > 0 and notes["opset"] >= 17
    assert notes["intra_op_threads"] == torch.get_num_threads()


def test_one_session_serves_batch_1_and_37(
    pair: tuple[nn.Module, nn.Module, StrategyContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    eager, compiled, context = pair
    batch_axis = onnx.load(context.notes["artifact"]).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.dim_value  # symbolic, not baked in
    session = compiled.forward.session  # type: ignore[union-attr]
    calls = count_session_runs(monkeypatch, compiled)
    for batch in (1, 37):
        obs = make_observations(batch, 46, 9, seed=batch)
        with torch.no_grad():
            logits, value = compiled(obs)
            expected_logits, expected_value = eager(obs)
        assert logits.shape == (batch, 100) and value.shape == (batch,)
        assert_close(logits, expected_logits)
        assert_close(value, expected_value)
    assert len(calls) == 2 and compiled.forward.session is session  # type: ignore[union-attr]


def test_ppo_methods_run_through_the_session(
    pair: tuple[nn.Module, nn.Module, StrategyContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, compiled, _ = pair
    calls = count_session_runs(monkeypatch, compiled)
    obs = make_observations(16, 46, 9, seed=3)
    mask = make_legal_masks(16, 100, seed=3, min_legal=2, max_legal=20)
    with torch.no_grad():
        compiled.get_action_and_value(obs, mask)
        assert len(calls) == 1
        actions, _, _ = compiled.get_action_and_value(obs, mask, deterministic=True)
        compiled.evaluate_actions(obs, actions, mask)
    assert len(calls) == 3
    assert_equivalent(eager, compiled, batch=16, seed=3)
    assert len(calls) > 3


def test_state_dict_keys_and_values_are_the_eager_models(
    pair: tuple[nn.Module, nn.Module, StrategyContext],
) -> None:
    eager, compiled, _ = pair
    assert list(compiled.state_dict()) == list(eager.state_dict())
    fresh = build_model("actor-critic", **SMALL)
    fresh.load_state_dict(compiled.state_dict(), strict=True)
    for key, value in eager.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    # Loading the very same weights into the compiled model is accepted (values unchanged).
    twin = copy.deepcopy(compiled)
    twin.load_state_dict(eager.state_dict(), strict=True)
    with torch.no_grad():
        obs = make_observations(4, 46, 9, seed=9)
        assert_close(twin(obs)[0], eager(obs)[0])


def test_changed_weights_are_refused_not_ignored(
    pair: tuple[nn.Module, nn.Module, StrategyContext],
) -> None:
    _, compiled, _ = pair
    obs = make_observations(2, 46, 9)
    twin = copy.deepcopy(compiled)  # shares the session, owns its weights
    with torch.no_grad():
        twin.policy_head.bias.add_(1.0)
        with pytest.raises(StaleWeightsError, match="changed after its ONNX export"):
            twin(obs)
    other = build_model("actor-critic", **SMALL)
    twin = copy.deepcopy(compiled)
    twin.load_state_dict(other.state_dict())
    with pytest.raises(KeiseiError, match="compile the updated eager model again"):
        twin.get_action_and_value(obs)


def test_training_is_refused_with_a_clear_error(
    pair: tuple[nn.Module, nn.Module, StrategyContext], cache_dir: Path
) -> None:
    _, compiled, _ = pair
    twin = copy.deepcopy(compiled).train()
    obs = make_observations(4, 46, 9)
    with pytest.raises(InferenceOnlyError, match="inference-only"):
        twin(obs)
    with pytest.raises(KeiseiError, match=r"call \.eval\(\)"):
        twin.evaluate_actions(obs, torch.zeros(4, dtype=torch.long))
    eager = build_model("actor-critic", **SMALL)
    with pytest.raises(InferenceOnlyError, match="inference-only"):
        apply_onnxruntime(eager, StrategyContext(training=True, cache_dir=cache_dir))
    with pytest.raises(KeiseiError, match="cpu only"):
        apply_onnxruntime(eager, StrategyContext(device="cuda", cache_dir=cache_dir))


def test_inputs_the_graph_cannot_take_are_input_errors(
    pair: tuple[nn.Module, nn.Module, StrategyContext],
) -> None:
    _, compiled, _ = pair
    with torch.no_grad():
        with pytest.raises(InputError, match="float32 CPU"):
            compiled(make_observations(2, 46, 9, dtype=torch.float64))
        with pytest.raises(InputError, match=r"\(B >= 1, 46, 9, 9\)"):
            compiled(make_observations(2, 45, 9))


def test_warm_start_reuses_the_file_without_exporting(
    pair: tuple[nn.Module, nn.Module, StrategyContext], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, _, cold = pair

    def no_export(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a warm start must not export")

    monkeypatch.setattr(export_module, "export_to_onnx", no_export)
    warm_model, warm = compile_copy(eager, cache_dir)
    assert warm.notes["warm_start"] is True
    assert warm.notes["artifact"] == cold.notes["artifact"]
    assert warm.notes["export_seconds"] == cold.notes["export_seconds"]  # the cold cost, kept
    assert_equivalent(eager, warm_model, batch=5)


@pytest.mark.slow  # exports a model
@pytest.mark.parametrize("damage", ["truncate", "garbage-with-matching-sidecar"])
def test_a_corrupt_cached_export_is_rebuilt(
    pair: tuple[nn.Module, nn.Module, StrategyContext], tmp_path: Path, damage: str
) -> None:
    import hashlib
    import json

    eager, _, cold = pair
    artifact = Path(cold.notes["artifact"])
    target = tmp_path / artifact.parent.name
    shutil.copytree(artifact.parent, target)
    onnx_path, meta_path = target / artifact.name, target / artifact.with_suffix(".json").name
    if damage == "truncate":
        onnx_path.write_bytes(onnx_path.read_bytes()[:1000])
        reason = "SHA-256"
    else:
        garbage = b"not an onnx model" * 64
        onnx_path.write_bytes(garbage)
        meta = json.loads(meta_path.read_text())
        meta["sha256"] = hashlib.sha256(garbage).hexdigest()
        meta_path.write_text(json.dumps(meta))
        reason = "rejected by onnxruntime"
    rebuilt, context = compile_copy(eager, tmp_path)
    assert context.notes["warm_start"] is False
    assert reason in context.notes["cache_miss_reason"]
    assert Path(context.notes["artifact"]) == onnx_path
    assert_equivalent(eager, rebuilt, batch=3)
    _, again = compile_copy(eager, tmp_path)
    assert again.notes["warm_start"] is True


@pytest.mark.slow  # exports a model
def test_an_unwritable_cache_still_compiles(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    eager = randomise_batchnorm(build_model("actor-critic", conv_channels=2, num_actions=7))
    compiled, context = compile_copy(eager, blocker)
    assert context.notes["artifact"] is None and "cache not written" in context.notes["cache_write_error"]
    assert_equivalent(eager, compiled, batch=4)


@pytest.mark.slow  # exports a model
@settings(max_examples=3)
@given(
    channels=st.integers(1, 8),
    board=st.integers(2, 9),
    conv=st.integers(1, 6),
    actions=st.integers(2, 64),
    batch=st.integers(1, 40),
)
def test_property_actor_critic_configs_match_eager(
    channels: int, board: int, conv: int, actions: int, batch: int
) -> None:
    eager = build_model(
        "actor-critic", input_channels=channels, board_size=board, conv_channels=conv, num_actions=actions
    ).eval()
    compiled, _ = compile_copy(eager)  # the session-wide KEISEI_CACHE_DIR
    assert_equivalent(eager, compiled, batch=batch, seed=batch)
    assert_equivalent(eager, compiled, batch=1, seed=batch + 1)


@pytest.mark.slow  # exports a model
@pytest.mark.skipif(not HAVE_RESTOWER, reason="keisei-plugin-restower is not installed")
@settings(max_examples=3)
@given(
    depth=st.integers(0, 2),
    width=st.sampled_from([4, 8, 16]),
    se_ratio=st.sampled_from([0.0, 0.25, 0.5]),
    se_kind=st.sampled_from(["se", "film", "gpool"]),
    batch=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_property_restower_configs_match_eager(
    depth: int, width: int, se_ratio: float, se_kind: str, batch: int, seed: int
) -> None:
    eager = build_model(
        "restower-small", depth=depth, width=width, se_ratio=se_ratio, se_kind=se_kind, num_actions=50
    )
    randomise_batchnorm(eager, seed)
    compiled, _ = compile_copy(eager)
    assert_equivalent(eager, compiled, batch=batch, seed=seed)
    assert_equivalent(eager, compiled, batch=1, seed=seed + 1)


@pytest.mark.slow  # exports a model
def test_compile_model_validates_and_keeps_the_onnx_model() -> None:
    compile_package = pytest.importorskip("keisei_core.compile")
    from keisei_plugin_onnxruntime.runtime import OnnxForward

    eager = build_model("actor-critic", **SMALL)
    compiled, report = compile_package.compile_model(eager, "onnxruntime")
    assert report.status == "compiled", report.reason
    assert report.checks and all(check.passed for check in report.checks)
    assert isinstance(compiled.forward, OnnxForward) and not compiled.training
    assert report.notes["exporter"].startswith("torch.onnx.export")
