"""channels-last and bf16 on random small ResTower and baseline configurations (no compiler,
so hypothesis can afford fresh models), and what the transforms leave behind."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.api import build_model
from keisei_core.compile import compile_model
from keisei_core.observations import make_observations
from keisei_core.plugins import get_host

TRANSFORMS = ["channels-last", "bf16", "channels-last+bf16"]


@st.composite
def small_configs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    common = {
        "num_actions": draw(st.integers(1, 50)),
        "input_channels": draw(st.integers(1, 12)),
        "board_size": draw(st.integers(2, 9)),
    }
    if "restower-small" in get_host().models and draw(st.booleans()):
        return "restower-small", {
            **common,
            "depth": draw(st.integers(0, 2)),
            "width": draw(st.integers(1, 8)),
            "se_ratio": draw(st.sampled_from([0.0, 0.25, 0.5])),
            "se_kind": draw(st.sampled_from(["se", "film", "gpool"])),
        }
    return "actor-critic", {**common, "conv_channels": draw(st.integers(1, 6))}


@settings(max_examples=5)
@given(config=small_configs(), strategy=st.sampled_from(TRANSFORMS), seed=st.integers(0, 2**16), batch=st.integers(2, 12))
def test_transforms_match_eager_on_random_configs(config: tuple[str, dict[str, Any]], strategy: str, seed: int, batch: int) -> None:
    name, options = config
    torch.manual_seed(seed)
    model = build_model(name, **options)
    compiled, report = compile_model(model, strategy, batch_sizes=(1, batch), seed=seed)
    assert report.status == "compiled", report.summary()
    assert report.modes == ("eval", "train")
    assert report.precision == ("bfloat16" if "bf16" in strategy else "float32")
    assert list(compiled.state_dict()) == list(model.state_dict())
    obs = make_observations(batch, options["input_channels"], options["board_size"], seed=seed)
    logits, value = compiled.eval()(obs)
    assert logits.dtype == value.dtype == torch.float32


def test_channels_last_keeps_weights_nhwc_through_loading(tiny_restower: Any) -> None:
    eager = tiny_restower()
    compiled, report = compile_model(eager, "channels-last", batch_sizes=(2,))
    assert report.status == "compiled"
    convs = [m for m in compiled.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    other = tiny_restower(seed=5)
    compiled.load_state_dict(other.state_dict())
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    obs = make_observations(3, 46, 9, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(obs), other.eval()(obs), atol=1e-5, rtol=1e-5)


def test_wrapped_models_copy_and_pickle_with_their_wrappers(tiny_restower: Any) -> None:
    eager = tiny_restower()
    compiled, _report = compile_model(eager, "channels-last+bf16", batch_sizes=(2,))
    twin = copy.deepcopy(compiled)
    # The copy's forward is bound to the copy, not to the original.
    assert twin.forward.module is twin
    with torch.no_grad():
        for param in twin.parameters():
            param.zero_()
    obs = make_observations(2, 46, 9)
    with torch.no_grad():
        assert not torch.equal(twin.eval()(obs)[0], compiled.eval()(obs)[0])
    restored = pickle.loads(pickle.dumps(compiled))
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(obs), compiled(obs))
