"""aot-inductor: one package per (model, weights, torch, composition), reused on warm starts,
run by the PPO methods, inference only, rebuilt for new weights."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from keisei_plugin_inductor.aot import AotPackage

from keisei_core.compile import artifact_key, forward_wrappers
from keisei_core.errors import InputError
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.specs import StrategyContext

pytestmark = pytest.mark.slow

FP32 = {"atol": 1e-4, "rtol": 1e-4}


def _package(model: torch.nn.Module) -> AotPackage:
    for wrapper in forward_wrappers(model):
        if isinstance(wrapper, functools.partial) and isinstance(wrapper.keywords.get("package"), AotPackage):
            return wrapper.keywords["package"]
    raise AssertionError("no AOT package on the model")


def test_cold_build_then_warm_reuse_of_the_package(aot: Any, aot_warm: Any) -> None:
    cold, warm = aot.report, aot_warm.report
    assert cold.status == warm.status == "compiled", (cold.summary(), warm.summary())
    assert cold.modes == ("eval",) and cold.recompiles == 0
    path = Path(cold.notes["aot_package"])
    assert path.suffix == ".pt2" and path.is_file() and path.parent.name == "aot-inductor"
    assert warm.notes["aot_package"] == str(path)
    assert warm.warm_start is True
    assert cold.compile_seconds is not None and warm.compile_seconds is not None
    if cold.warm_start is False:  # built in this session: loading must beat building
        assert warm.compile_seconds < cold.compile_seconds
    assert _package(aot_warm.model).builds == 0


def test_ppo_methods_run_the_package(aot: Any) -> None:
    model = aot.model
    assert not model.training  # inference only: returned in eval mode
    package = _package(model)
    runner, calls = package.runner, []

    def counting(*args: Any) -> Any:
        calls.append(args[0].shape[0])
        return runner(*args)

    package.runner = counting
    try:
        obs, masks = make_observations(3, 46, 9, seed=1), make_legal_masks(3, 40, seed=1)
        model.get_action_and_value(obs, masks)
        model.evaluate_actions(obs, masks.float().argmax(-1), masks)
    finally:
        package.runner = runner
    assert calls == [3, 3]


def test_train_mode_is_refused_with_a_clear_error(aot: Any) -> None:
    model = aot.model
    try:
        model.train()
        with pytest.raises(InputError, match="inference only"):
            model(make_observations(2, 46, 9))
    finally:
        model.eval()


def test_keys_copies_and_weights(aot: Any, tiny_restower: Any) -> None:
    model, eager = aot.model, aot.eager.eval()
    assert list(model.state_dict()) == list(eager.state_dict())
    obs = make_observations(5, 46, 9, seed=3)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(twin(obs), eager(obs), **FP32)
    # Loading the same weights marks the package stale; the next call finds it on disk.
    package = _package(model)
    builds = package.builds
    model.load_state_dict(eager.state_dict())
    assert package.stale
    with torch.no_grad():
        torch.testing.assert_close(model(obs), eager(obs), **FP32)
    assert not package.stale and package.builds == builds
    # Other weights need another package: the key covers the weights.
    other = tiny_restower(seed=3)
    context = StrategyContext(composition=("aot-inductor",))
    assert artifact_key(other, context, "aot-inductor") != artifact_key(eager, context, "aot-inductor")


@settings(max_examples=8)
@given(batch=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_the_package_matches_eager_at_any_batch_size(aot: Any, batch: int, seed: int) -> None:
    obs = make_observations(batch, 46, 9, seed=seed)
    with torch.no_grad():
        torch.testing.assert_close(aot.model(obs), aot.eager.eval()(obs), **FP32)
