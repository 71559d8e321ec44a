"""The JIT Inductor strategies on a tiny ResTower: validated, PPO methods compiled, keys kept,
no recompiles across batch sizes, warm starts from Inductor's caches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.compile import compiled_call
from keisei_core.observations import make_legal_masks, make_observations

pytestmark = pytest.mark.slow

FP32 = {"atol": 1e-4, "rtol": 1e-4}


def _compiled_regions(call: Any) -> set[str]:
    with torch.profiler.profile() as prof:
        call()
    return {e.name for e in prof.events() if e.name.startswith("Torch-Compiled Region")}


def test_inductor_is_validated_in_eval_and_train_mode(inductor: Any) -> None:
    report = inductor.report
    assert report.status == "compiled", report.summary()
    assert report.modes == ("eval", "train")
    assert {(c.method, c.output) for c in report.checks} >= {("backward", "grad"), ("forward", "buffers")}
    assert all(c.passed for c in report.checks)
    assert report.compile_seconds is not None and report.cache.get("fxgraph_cache_miss", 0) + report.cache.get("fxgraph_cache_hit", 0) > 0
    # 3 batch buckets (1; 2-15; 16+, reached by the off-bucket size 33 validation adds)
    # x (eval no-grad, train with grad); no more.
    assert 33 in report.batch_sizes
    assert report.graphs == 6 and report.recompiles == 5


def test_inductor_caches_live_in_the_keisei_cache(inductor: Any) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = inductor.report.notes["inductor_cache_dir"]
    assert folder == os.environ["TORCHINDUCTOR_CACHE_DIR"]
    # Torch's default (/tmp/torchinductor_<user>) is replaced; only a user's own choice stays.
    assert os.path.abspath(folder) != os.path.abspath(default_cache_dir())
    assert any(Path(folder).rglob("*")), "Inductor wrote nothing to its cache folder"


def test_ppo_methods_run_the_compiled_graphs(inductor: Any) -> None:
    model = inductor.model.eval()
    obs, masks = make_observations(3, 46, 9, seed=2), make_legal_masks(3, 40, seed=2)
    actions = masks.float().argmax(-1)
    with torch.no_grad():
        assert _compiled_regions(lambda: model.get_action_and_value(obs, masks))
        assert _compiled_regions(lambda: model.evaluate_actions(obs, actions, masks))
        assert not _compiled_regions(lambda: inductor.eager.eval().evaluate_actions(obs, actions, masks))


def test_state_dict_keys_and_weights_in_both_directions(inductor: Any, tiny_restower: Any) -> None:
    model, eager = inductor.model.eval(), inductor.eager
    assert list(model.state_dict()) == list(eager.state_dict())
    other = tiny_restower(seed=9).eval()
    obs = make_observations(4, 46, 9, seed=4)
    try:
        model.load_state_dict(other.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(model(obs), other(obs), **FP32)
        fresh = tiny_restower(seed=1).eval()
        fresh.load_state_dict(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(fresh(obs), other(obs), **FP32)
    finally:
        model.load_state_dict(eager.state_dict())


@settings(max_examples=6)
@given(batch=st.integers(1, 15), seed=st.integers(0, 2**31 - 1), occupancy=st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_inductor_matches_eager_on_any_input_without_recompiling(inductor: Any, batch: int, seed: int, occupancy: float) -> None:
    model, eager = inductor.model.eval(), inductor.eager.eval()
    call = compiled_call(model)
    assert call is not None
    graphs = call.graph_count()
    obs = make_observations(batch, 46, 9, seed=seed, occupancy=occupancy)
    masks = make_legal_masks(batch, 40, seed=seed, min_legal=1, max_legal=40)
    with torch.no_grad():
        torch.testing.assert_close(model(obs), eager(obs), **FP32)
        c_logp, c_ent, c_val = model.evaluate_actions(obs, masks.float().argmax(-1), masks)
        e_logp, e_ent, e_val = eager.evaluate_actions(obs, masks.float().argmax(-1), masks)
    torch.testing.assert_close((c_logp, c_ent, c_val), (e_logp, e_ent, e_val), **FP32)
    assert call.graph_count() == graphs, "a batch size inside a compiled bucket recompiled"


def test_second_compile_is_a_warm_start(inductor: Any, inductor_warm: Any) -> None:
    cold, warm = inductor.report, inductor_warm.report
    assert warm.status == "compiled"
    assert warm.warm_start is True, warm.cache
    assert warm.cache.get("fxgraph_cache_miss", 0) == 0
    assert cold.compile_seconds is not None and warm.compile_seconds is not None
    if cold.warm_start is False:  # a fresh cache: the warm run skipped code generation
        assert cold.cache.get("fxgraph_cache_miss", 0) > 0


def test_composed_transforms_compile_in_bf16_with_nhwc_weights(composed: Any) -> None:
    report = composed.report
    assert report.status == "compiled", report.summary()
    assert report.strategy == "channels-last+bf16+inductor" and report.precision == "bfloat16"
    assert report.notes["autocast"] == "bfloat16"
    model = composed.model
    assert list(model.state_dict()) == list(composed.eager.state_dict())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    with torch.no_grad():
        logits, value = model.eval()(make_observations(2, 46, 9))
    assert logits.dtype == value.dtype == torch.float32


def test_freezing_recompiles_after_new_weights(frozen: Any, tiny_restower: Any) -> None:
    report, model = frozen.report, frozen.model
    assert report.status == "compiled", report.summary()
    assert report.modes == ("eval",) and not model.training
    call = compiled_call(model)
    assert call is not None
    other = tiny_restower(seed=21).eval()
    obs = make_observations(4, 46, 9, seed=8)
    resets = call.resets
    try:
        model.load_state_dict(other.state_dict())
        assert call.resets == resets + 1
        with torch.no_grad():
            torch.testing.assert_close(model(obs), other(obs), **FP32)
    finally:
        model.load_state_dict(frozen.eager.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(obs), frozen.eager.eval()(obs), **FP32)


def test_max_autotune_is_validated(autotuned: Any) -> None:
    report = autotuned.report
    assert report.status == "compiled", report.summary()
    assert report.notes["inductor_mode"] == "max-autotune"
    # the declared batch 4, and the off-bucket sizes validation always adds
    assert all(c.passed for c in report.checks) and {c.batch_size for c in report.checks} == {4, 3, 33}
