"""The default model's state_dict is Keisei's, key for key (order, shapes, dtypes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def _layout(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]


def test_default_matches_reference_listing(build: Callable[..., Any], restower_listing: Any) -> None:
    # The meta device builds the 13M-parameter model without allocating or initialising it.
    with torch.device("meta"):
        model = build("restower")
    assert len(restower_listing) == 187
    assert _layout(model) == restower_listing
    assert sum(p.numel() for p in model.parameters()) == 13_241_300


def test_no_se_is_the_listing_without_se_entries(build: Callable[..., Any], restower_listing: Any) -> None:
    expected = [entry for entry in restower_listing if ".se." not in entry[0]]
    for name, options in (("restower", {"se_ratio": 0.0}), ("restower-no-se", {})):
        with torch.device("meta"):
            model = build(name, **options)
        assert _layout(model) == expected
        assert len(expected) == 151
        assert sum(p.numel() for p in model.parameters()) == 12_943_508
