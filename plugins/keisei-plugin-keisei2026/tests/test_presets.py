"""Every preset's state_dict is Keisei 2026's, key for key and shape for shape, in order
(listings written from Keisei 2026's own classes by tools/list_upstream_state_dicts.py at
commit 08747e10cde233d5c4e4244dbf01b8bfc5c19ccc), and each declares its spaces and heads."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from keisei_plugin_keisei2026.plugin import PRESETS

from keisei_core.heads import SCALAR_HEADS, WDL_SCORE_HEADS, output_heads
from keisei_core.spaces import KEISEI_2026, model_spaces

DATA = Path(__file__).parent / "data"
LISTED = sorted(p.name.split(".upstream")[0] for p in DATA.glob("*.upstream.state_dict.txt"))


def listing(name: str) -> list[tuple[str, tuple[int, ...]]]:
    entries = []
    for line in (DATA / f"{name}.upstream.state_dict.txt").read_text().splitlines():
        match = re.fullmatch(r"(\S+)\s+\[([^\]]*)\]", line.strip())
        assert match, line
        entries.append((match[1], tuple(int(d) for d in match[2].split(",") if d.strip())))
    return entries


def test_every_family_has_a_listing() -> None:
    assert {"keisei2026-se-resnet-b10c128", "keisei2026-se-resnet-b40c256", "keisei2026-resnet",
            "keisei2026-mlp", "keisei2026-transformer"} <= set(LISTED)


@pytest.mark.parametrize("name", LISTED)
def test_preset_state_dict_is_upstreams(name: str, build: Callable[..., Any]) -> None:
    with torch.device("meta"):
        model = build(name)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == listing(name)


def test_b40c256_has_the_822_entries_keisei_2026_writes() -> None:
    # The "745 missing, 822 unexpected" against restower: 822 is this layout.
    assert len(listing("keisei2026-se-resnet-b40c256")) == 822


@pytest.mark.parametrize("name", [p[0] for p in PRESETS])
def test_presets_declare_2026_spaces_and_their_heads(name: str, build: Callable[..., Any]) -> None:
    with torch.device("meta"):
        model = build(name)
    assert model_spaces(model) == KEISEI_2026
    assert output_heads(model) == (WDL_SCORE_HEADS if "se-resnet" in name else SCALAR_HEADS)
    assert model.keisei_checkpoint_architectures == (
        ("se_resnet",) if "se-resnet" in name else (name.removeprefix("keisei2026-"),)
    )


def test_other_input_channels_are_a_generic_encoding(build: Callable[..., Any]) -> None:
    model = build("keisei2026-se-resnet-tiny", input_channels=46)
    spaces = model_spaces(model)
    assert spaces.observation.channels == 46 and spaces.observation.encoding == "generic"
    assert spaces.actions == KEISEI_2026.actions
