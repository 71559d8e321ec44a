"""Hypothesis over random small configurations: forward shapes, finiteness, and sizes that
follow the documented layout (so a variant cannot grow or lose parameters unnoticed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.nn import se_hidden_width
from keisei_core.observations import make_observations


def expected_sizes(o: dict[str, Any]) -> tuple[int, int]:
    """(state_dict entries, parameters) from the layout in keisei_plugin_restower.blocks."""
    c_in, a, b, depth, w = o["input_channels"], o["num_actions"], o["board_size"], o["depth"], o["width"]
    conv3 = w * w * 9 + w
    block_entries, block_params = 14, 2 * conv3 + 2 * 2 * w  # two convs, two BatchNorms
    if o["se_ratio"] > 0 and o["se_kind"] == "gpool":
        block_entries, block_params = block_entries + 2, block_params + 2 * w * w + w
    elif o["se_ratio"] > 0:
        hidden = se_hidden_width(w, o["se_ratio"])
        out = 2 * w if o["se_kind"] == "film" else w
        block_entries, block_params = block_entries + 4, block_params + w * hidden + hidden + hidden * out + out
    head_params = 2 * w + 2 + 2 * 2
    entries = 7 + depth * block_entries + 2 * 9
    params = (
        c_in * w * 9 + w + 2 * w
        + depth * block_params
        + head_params + 2 * b * b * a + a
        + head_params + 2 * b * b + 1
    )
    return entries, params


configs = st.fixed_dictionaries(
    {
        "input_channels": st.integers(1, 8),
        "num_actions": st.integers(1, 64),
        "board_size": st.integers(5, 19),
        "depth": st.integers(0, 3),
        "width": st.integers(1, 24),
        "se_ratio": st.sampled_from([0.0, 0.01, 0.125, 0.25, 0.5, 1.0, 2.0]),
        "se_kind": st.sampled_from(["se", "film", "gpool"]),
    }
)


@settings(max_examples=25)
@given(options=configs, batch=st.integers(1, 3), training=st.booleans())
def test_random_small_configs(build: Callable[..., Any], options: dict[str, Any], batch: int, training: bool) -> None:
    model = build("restower", **options).train(training)
    entries, params = expected_sizes(options)
    assert len(model.state_dict()) == entries
    assert sum(p.numel() for p in model.parameters()) == params
    obs = make_observations(batch, options["input_channels"], options["board_size"], seed=batch)
    with torch.no_grad():
        logits, value = model(obs)
    assert logits.shape == (batch, options["num_actions"]) and value.shape == (batch,)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()


def test_size_formula_matches_keisei_facts() -> None:
    default = {"input_channels": 46, "num_actions": 13527, "board_size": 9, "depth": 9, "width": 256,
               "se_ratio": 0.25, "se_kind": "se"}
    assert expected_sizes(default) == (187, 13_241_300)
    assert expected_sizes({**default, "se_ratio": 0.0}) == (151, 12_943_508)
