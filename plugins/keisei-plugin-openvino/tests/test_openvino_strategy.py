"""The ``openvino`` strategies: equivalence with eager, PPO methods through OpenVINO,
unchanged state_dict keys, the IR cache (warm start, corrupt or stale entries rebuilt),
new weights, copies, and refusal of training.

Tolerance: atol = rtol = 1e-4 for ``openvino`` (f32 hint): both sides compute in float32
and differ by summation order and OpenVINO's Conv+BatchNorm fusion (measured 1e-7..2e-6
on the ResTower), while real defects (a missed BatchNorm, old weights, a baked batch
size, OpenVINO's default bf16 precision on a bf16-capable CPU) are off by 1e-3 or more.
``openvino-bf16`` is checked by compile_model with keisei's bfloat16 tolerance.

Conversions (torch.export + convert_model, a few seconds each) are the slow tier; the
module shares one converted model (``pair``).
"""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from keisei_plugin_openvino import convert as convert_module
from keisei_plugin_openvino.errors import InferenceOnlyError, OpenVinoStrategyError
from keisei_plugin_openvino.runtime import OpenVinoRunner
from keisei_plugin_openvino.strategy import apply_openvino
from torch import nn

from keisei_core.api import build_model
from keisei_core.errors import InputError, KeiseiError
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.plugins import PluginHost
from keisei_core.specs import StrategyContext
from keisei_core.testing.acting import assert_acts_like, randomise_batchnorm

ATOL = RTOL = 1e-4
SMALL = {"conv_channels": 4, "num_actions": 100}


def compile_copy(
    eager: nn.Module, cache_dir: Path, strategy: str = "openvino", batch_sizes: tuple[int, ...] = (1,)
) -> tuple[nn.Module, StrategyContext]:
    context = StrategyContext(
        model_name=getattr(eager, "keisei_model_name", None),
        model_options=getattr(eager, "keisei_model_options", None),
        cache_dir=cache_dir,
        composition=(strategy,),
        batch_sizes=batch_sizes,
    )
    return apply_openvino(copy.deepcopy(eager), context, strategy=strategy), context


def runner_of(model: nn.Module) -> OpenVinoRunner:
    wrapper = model.keisei_forward_wrappers[-1]  # type: ignore[index]
    runner = wrapper.keywords["runner"]
    assert isinstance(runner, OpenVinoRunner)
    return runner


def count_runs(monkeypatch: pytest.MonkeyPatch, model: nn.Module) -> list[int]:
    runner = runner_of(model)
    calls: list[int] = []
    real_run = runner.run

    def counting_run(obs: torch.Tensor) -> Any:
        calls.append(int(obs.shape[0]))
        return real_run(obs)

    monkeypatch.setattr(runner, "run", counting_run)
    return calls


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


def assert_equivalent(eager: nn.Module, compiled: nn.Module, batch: int, seed: int = 0) -> None:
    """forward, get_action_and_value(deterministic, masked) and evaluate_actions agree."""
    assert_acts_like(eager, compiled, batch=batch, seed=seed, atol=ATOL, rtol=RTOL)


# -- cheap: registration and refusals (no conversion) ----------------------------------
def test_registered_through_the_entry_point() -> None:
    host = PluginHost().load()
    for name, precision in (("openvino", None), ("openvino-bf16", "bfloat16")):
        registration = host.strategies.registration(name)
        spec = registration.spec
        assert registration.distribution == "keisei-plugin-openvino"
        assert spec.kind == "compiler" and spec.training is False and spec.precision == precision
        assert spec.devices == {"cpu"} and spec.dtypes == {"float32"}
    assert host.probes.registration("peers").distribution == "keisei-plugin-openvino"


def test_entry_point_module_imports_neither_torch_nor_openvino() -> None:
    code = (
        "import sys, keisei_plugin_openvino.plugin; "
        "heavy = [m for m in ('torch', 'openvino', 'onnxruntime') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cells_it_cannot_compile_are_one_line_errors(tmp_path: Path) -> None:
    eager = build_model("actor-critic", **SMALL)
    with pytest.raises(InferenceOnlyError, match="inference-only"):
        apply_openvino(eager, StrategyContext(training=True, cache_dir=tmp_path))
    with pytest.raises(OpenVinoStrategyError, match="cpu only"):
        apply_openvino(eager, StrategyContext(device="cuda", cache_dir=tmp_path))
    with pytest.raises(OpenVinoStrategyError, match="float32 models only"):
        apply_openvino(eager, StrategyContext(dtype="bfloat16", cache_dir=tmp_path))
    with pytest.raises(OpenVinoStrategyError, match="needs float32 CPU weights"):
        apply_openvino(copy.deepcopy(eager).double(), StrategyContext(cache_dir=tmp_path))
    with pytest.raises(KeiseiError, match="unknown openvino strategy"):
        apply_openvino(eager, StrategyContext(cache_dir=tmp_path), strategy="openvino-int4")
    assert not any(tmp_path.iterdir())  # refused before anything was converted or written


# -- slow: one shared conversion -------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def pair(cache_dir: Path) -> tuple[nn.Module, nn.Module, StrategyContext]:
    """One cold conversion shared by the module: (eager, compiled, its context)."""
    eager = randomise_batchnorm(build_model("actor-critic", **SMALL))
    compiled, context = compile_copy(eager, cache_dir)
    return eager, compiled, context


@pytest.mark.slow
def test_cold_conversion_is_recorded_and_computes_in_f32(
    pair: tuple[nn.Module, nn.Module, StrategyContext],
) -> None:
    _, compiled, context = pair
    notes = context.notes
    assert notes["warm_start"] is False and notes["cache_miss_reason"] == "no cached IR"
    xml = Path(notes["artifact"])
    assert xml.suffix == ".xml" and xml.with_suffix(".bin").is_file() and xml.with_suffix(".json").is_file()
    assert notes["convert_seconds"] > 0
    # OpenVINO would pick bf16 on a bf16-capable CPU by default; the strategy asks for f32.
    assert notes["inference_precision"] == "f32"
    assert f"INFERENCE_NUM_THREADS={torch.get_num_threads()}" in notes["openvino_config"]
    batch_axis = runner_of(compiled).compiled.inputs[0].get_partial_shape()[0]
    assert batch_axis.is_dynamic


@pytest.mark.slow
@settings(max_examples=10)
@given(batch=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_property_one_model_matches_eager_at_every_batch(
    pair: tuple[nn.Module, nn.Module, StrategyContext], batch: int, seed: int
) -> None:
    eager, compiled, _ = pair
    assert_equivalent(eager, compiled, batch=batch, seed=seed)


@pytest.mark.slow
def test_large_batches_are_split_over_parallel_requests(
    pair: tuple[nn.Module, nn.Module, StrategyContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, _, shared = pair
    # The runner takes torch's thread count when applied; with one thread the THROUGHPUT
    # hint has one stream and nothing is split, so this copy is compiled with two.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    try:
        compiled, context = compile_copy(eager, Path(shared.cache_dir))
    finally:
        torch.set_num_threads(threads)
    runner = runner_of(compiled)
    if not runner.parallel_requests:
        pytest.skip("the CPU plugin's THROUGHPUT hint gives one request on this machine")
    assert context.notes["parallel_requests"] == len(runner.parallel_requests) >= 2
    assert any(entry == "PERFORMANCE_HINT=THROUGHPUT" for entry in context.notes["openvino_parallel_config"])
    smallest = runner.parallel_min_batch
    assert smallest is not None
    twin = runner_of(copy.deepcopy(compiled))  # a copy gets requests of its own
    assert twin.parallel_requests and all(
        mine is not theirs for mine, theirs in zip(twin.parallel_requests, runner.parallel_requests, strict=True)
    )
    split: list[int] = []
    real = runner._run_parallel
    monkeypatch.setattr(runner, "_run_parallel", lambda array: split.append(array.shape[0]) or real(array))
    for batch in (smallest - 1, smallest, smallest + 3):  # + 3: chunks of unequal sizes
        assert_equivalent(eager, compiled, batch=batch, seed=batch)
    assert set(split) == {smallest, smallest + 3}  # forward and both PPO methods, each split


@pytest.mark.slow
def test_declared_batch_sizes_run_static_shape_models(
    pair: tuple[nn.Module, nn.Module, StrategyContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, _, context = pair
    compiled, declared = compile_copy(eager, Path(context.cache_dir), batch_sizes=(1, 5, 4096))
    runner = runner_of(compiled)
    smallest = runner.parallel_min_batch
    expected = [1, 5] if smallest is not None else [1, 5, 4096]  # the split takes large batches
    assert sorted(runner.static_requests) == declared.notes["static_batch_sizes"] == expected
    for size in (1, 5):
        assert list(runner.static_models[size].inputs[0].get_partial_shape()) == [size, 46, 9, 9]
    used: list[int] = []
    for size, request in runner.static_requests.items():
        real = request.infer
        monkeypatch.setattr(request, "infer", lambda *a, size=size, real=real, **k: used.append(size) or real(*a, **k))
    for batch in (1, 3, 5):  # 3 is not declared: the dynamic model
        assert_equivalent(eager, compiled, batch=batch, seed=batch)
    assert set(used) == {1, 5}
    twin = runner_of(copy.deepcopy(compiled))  # a copy gets requests of its own
    assert set(twin.static_requests) == set(expected) and twin.static_requests[1] is not runner.static_requests[1]


@pytest.mark.slow
def test_ppo_methods_run_through_openvino(
    pair: tuple[nn.Module, nn.Module, StrategyContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, compiled, _ = pair
    calls = count_runs(monkeypatch, compiled)
    obs = make_observations(16, 46, 9, seed=3)
    mask = make_legal_masks(16, 100, seed=3, min_legal=2, max_legal=20)
    with torch.no_grad():
        compiled.get_action_and_value(obs, mask)
        actions, _, _ = compiled.get_action_and_value(obs, mask, deterministic=True)
        compiled.evaluate_actions(obs, actions, mask)
    assert calls == [16, 16, 16]


@pytest.mark.slow
def test_state_dict_keys_and_training_refusal(pair: tuple[nn.Module, nn.Module, StrategyContext]) -> None:
    eager, compiled, _ = pair
    assert list(compiled.state_dict()) == list(eager.state_dict())
    fresh = build_model("actor-critic", **SMALL)
    fresh.load_state_dict(compiled.state_dict(), strict=True)
    twin = copy.deepcopy(compiled).train()
    obs = make_observations(4, 46, 9)
    with pytest.raises(InferenceOnlyError, match=r"inference-only.*call \.eval\(\)"):
        twin(obs)
    with torch.no_grad():
        with pytest.raises(InputError, match="float32 CPU"):
            compiled(make_observations(2, 46, 9, dtype=torch.float64))
        with pytest.raises(InputError, match=r"\(B >= 1, 46, 9, 9\)"):
            compiled(make_observations(2, 45, 9))


@pytest.mark.slow
def test_copies_and_pickles_run_their_own_weights(
    pair: tuple[nn.Module, nn.Module, StrategyContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, compiled, _ = pair
    conversions = []
    real_convert = convert_module.convert
    monkeypatch.setattr(convert_module, "convert", lambda *a, **k: conversions.append(1) or real_convert(*a, **k))
    twin = copy.deepcopy(compiled)
    assert runner_of(twin).compiled is runner_of(compiled).compiled  # shared, read-only
    assert_equivalent(eager, twin, batch=3)
    # A model fresh from the (warm) cache, converted once and then pickled.
    unused = build_model("actor-critic", **SMALL).eval()
    unused.load_state_dict(eager.state_dict())  # the same weights: the same cached IR
    fresh, _ = compile_copy(unused, Path(runner_of(compiled).context.cache_dir))
    revived = pickle.loads(pickle.dumps(fresh))  # reloads the cached IR on first call
    assert_equivalent(eager, revived, batch=2)
    assert conversions == []  # neither the copy nor the unpickled model converted again
    # The same weights loaded again are accepted without a conversion.
    twin.load_state_dict(eager.state_dict())
    assert_equivalent(eager, twin, batch=2)
    assert conversions == []


@pytest.mark.slow
def test_new_weights_get_their_own_ir_not_old_answers(
    pair: tuple[nn.Module, nn.Module, StrategyContext],
) -> None:
    eager, compiled, context = pair
    twin = copy.deepcopy(compiled)
    before = runner_of(twin).conversions
    other = randomise_batchnorm(build_model("actor-critic", **SMALL), seed=5)
    twin.load_state_dict(other.state_dict())
    assert_equivalent(other, twin, batch=4)  # converted anew for the loaded weights
    assert runner_of(twin).paths.xml != Path(context.notes["artifact"])  # type: ignore[union-attr]
    with torch.no_grad():  # and an in-place optimiser-like step is seen too
        twin.policy_head.bias.add_(1.0)
        other.policy_head.bias.add_(1.0)
    assert_equivalent(other, twin, batch=2)
    assert runner_of(twin).conversions == before + 2
    assert_equivalent(eager, compiled, batch=2)  # the original keeps its own


@pytest.mark.slow
def test_warm_start_reuses_the_ir_without_converting(
    pair: tuple[nn.Module, nn.Module, StrategyContext], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, _, cold = pair

    def no_convert(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a warm start must not convert")

    monkeypatch.setattr(convert_module, "convert", no_convert)
    warm_model, warm = compile_copy(eager, cache_dir)
    assert warm.notes["warm_start"] is True and "cache_miss_reason" not in warm.notes
    assert warm.notes["artifact"] == cold.notes["artifact"]
    assert warm.notes["convert_seconds"] == pytest.approx(cold.notes["convert_seconds"])
    assert_equivalent(eager, warm_model, batch=5)


@pytest.mark.slow
def test_stale_or_corrupt_cache_entries_are_refused_with_a_reason(
    pair: tuple[nn.Module, nn.Module, StrategyContext], tmp_path: Path
) -> None:
    import shutil

    from keisei_plugin_openvino.convert import IrPaths, load_cached

    _, _, cold = pair
    xml = Path(cold.notes["artifact"])
    key = xml.stem
    entry = IrPaths(xml, xml.with_suffix(".bin"), xml.with_suffix(".json"))
    assert load_cached(entry, key)[1] == "ok"
    assert "another key" in load_cached(entry, "0" * 32)[1]  # other weights, versions, options

    def damaged(change: Any) -> str:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        shutil.copytree(xml.parent, folder)
        paths = IrPaths(folder / xml.name, folder / entry.bin.name, folder / entry.meta.name)
        change(paths)
        model, reason = load_cached(paths, key)
        assert model is None
        return reason

    assert "SHA-256" in damaged(lambda p: p.bin.write_bytes(p.bin.read_bytes()[:100]))  # truncated
    assert "SHA-256" in damaged(lambda p: p.xml.write_text(p.xml.read_text().replace("f32", "f16", 1)))
    assert "no cached IR" in damaged(lambda p: p.meta.unlink())  # an IR no sidecar vouches for
    assert "unreadable" in damaged(lambda p: p.meta.write_text("{not json"))


@pytest.mark.slow
def test_a_corrupt_cached_ir_is_rebuilt(pair: tuple[nn.Module, nn.Module, StrategyContext], tmp_path: Path) -> None:
    import hashlib
    import shutil

    eager, _, cold = pair
    xml = Path(cold.notes["artifact"])
    target = tmp_path / xml.parent.name
    shutil.copytree(xml.parent, target)
    xml_copy, meta_copy = target / xml.name, target / xml.with_suffix(".json").name
    # Bytes the sidecar vouches for but OpenVINO cannot read: rejected at load, rebuilt.
    garbage = b"<not an openvino IR>" * 16
    xml_copy.write_bytes(garbage)
    meta = json.loads(meta_copy.read_text())
    meta["xml_sha256"] = hashlib.sha256(garbage).hexdigest()
    meta_copy.write_text(json.dumps(meta))
    rebuilt, context = compile_copy(eager, tmp_path)
    assert context.notes["warm_start"] is False
    assert "rejected by OpenVINO" in context.notes["cache_miss_reason"]
    assert Path(context.notes["artifact"]) == xml_copy
    assert_equivalent(eager, rebuilt, batch=3)
    _, again = compile_copy(eager, tmp_path)
    assert again.notes["warm_start"] is True


@pytest.mark.slow
def test_an_unwritable_cache_still_compiles(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    eager = randomise_batchnorm(build_model("actor-critic", conv_channels=2, num_actions=7))
    compiled, context = compile_copy(eager, blocker)
    assert context.notes["artifact"] is None and "cache not written" in context.notes["cache_write_error"]
    assert context.notes["warm_start"] is False
    assert_equivalent(eager, compiled, batch=4)


@pytest.mark.slow
def test_compile_model_validates_both_precisions_and_the_bf16_hint_is_used() -> None:
    from keisei_core.compile import compile_model

    eager = randomise_batchnorm(build_model("actor-critic", **SMALL))
    compiled, report = compile_model(eager, "openvino", batch_sizes=(1, 8))
    assert report.status == "compiled", report.reason
    assert report.checks and all(check.passed for check in report.checks)
    assert report.notes["inference_precision"] == "f32" and not compiled.training
    compiled_bf16, report_bf16 = compile_model(eager, "openvino-bf16", batch_sizes=(1, 8))
    assert report_bf16.status == "compiled", report_bf16.reason
    import openvino as ov

    # OpenVINO honours the bf16 hint only where the CPU has bf16 (AVX512_BF16/AMX); an
    # AVX2-only CPU (AMD EPYC Zen 3) lists FP32, INT8, BIN, EXPORT_IMPORT and computes in f32.
    native_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert report_bf16.precision == "bfloat16"
    assert report_bf16.notes["inference_precision"] == ("bf16" if native_bf16 else "f32")
    assert report_bf16.notes["artifact"] != report.notes["artifact"]
    obs = make_observations(8, 46, 9, seed=1)
    with torch.no_grad():
        exact = (compiled(obs)[0] - eager(obs)[0]).abs().max()
        rounded = (compiled_bf16(obs)[0] - eager(obs)[0]).abs().max()
    if native_bf16:
        assert exact < 1e-5 < rounded  # bf16 really computes in bf16, f32 really in f32
    else:
        assert exact < 1e-5 and rounded < 1e-5  # the hint is ignored: both compute in f32


@pytest.mark.slow
def test_restower_small_with_channels_last_before_it() -> None:
    from keisei_core.compile import compile_model

    pytest.importorskip("keisei_plugin_restower")
    eager = randomise_batchnorm(build_model("restower-small", depth=1, width=8, num_actions=50), seed=2)
    compiled, report = compile_model(eager, "channels-last+openvino", batch_sizes=(1, 5))
    assert report.status == "compiled", report.reason
    assert len(compiled.keisei_forward_wrappers) == 2  # channels-last inside the graph, then OpenVINO
