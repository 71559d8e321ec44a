"""Registration, shapes of every variant and preset, the core interface, gradients, options."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from keisei_plugin_restower.blocks import GlobalPoolingBias, GlobalPoolingBiasBlock, ResidualBlock
from keisei_plugin_restower.plugin import PRESETS
from torch import nn

from keisei_core.errors import ConfigError, InputError
from keisei_core.nn import SqueezeExcitation, SqueezeExcitationFiLM
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.plugins import PluginHost

NAMES = [p.name for p in PRESETS]
# name -> (depth, width, se_kind, se_ratio) the preset must give
EXPECTED = {
    "restower": (9, 256, "se", 0.25),
    "restower-film": (9, 256, "film", 0.25),
    "restower-gpool": (9, 256, "gpool", 0.25),
    "restower-no-se": (9, 256, "se", 0.0),
    "restower-small": (2, 32, "se", 0.25),
    "restower-deep": (40, 256, "se", 0.25),
}


def test_registered_names_family_and_distribution(host: PluginHost) -> None:
    registered = {r.name: r for r in host.models if r.plugin == "restower"}
    assert sorted(registered) == sorted(EXPECTED)
    for registration in registered.values():
        assert registration.spec.family == "restower"
        assert registration.distribution == "keisei-plugin-restower"
        assert registration.spec.description


def test_listing_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from keisei_core.plugins import PluginHost\n"
        "host = PluginHost(env={'KEISEI_PLUGINS': 'restower'}, strict=True).load()\n"
        "assert 'restower-deep' in host.models.names()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_preset_shapes_and_attributes(build: Callable[..., Any], name: str) -> None:
    depth, width, kind, ratio = EXPECTED[name]
    model = build(name)
    options = model.keisei_model_options
    assert (options["depth"], options["width"], options["se_kind"], options["se_ratio"]) == (depth, width, kind, ratio)
    assert model.observation_shape == (46, 9, 9) and model.num_actions == 13527
    assert model.keisei_repeated_blocks == ("res_blocks",)
    blocks = getattr(model, model.keisei_repeated_blocks[0])
    assert isinstance(blocks, nn.Sequential) and len(blocks) == depth
    model.eval()
    with torch.no_grad():
        logits, value = model(make_observations(2))
    assert logits.shape == (2, 13527) and value.shape == (2,)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()


@pytest.mark.parametrize(
    ("options", "block_type", "unit_type"),
    [
        ({"se_kind": "se"}, ResidualBlock, SqueezeExcitation),
        ({"se_kind": "film"}, ResidualBlock, SqueezeExcitationFiLM),
        ({"se_kind": "gpool"}, GlobalPoolingBiasBlock, GlobalPoolingBias),
        ({"se_ratio": 0.0}, ResidualBlock, type(None)),
        ({"se_ratio": 0.0, "se_kind": "gpool"}, ResidualBlock, type(None)),
    ],
)
def test_blocks_use_the_core_units(
    build: Callable[..., Any], options: dict[str, Any], block_type: type, unit_type: type
) -> None:
    model = build("restower-small", **options)
    for block in model.res_blocks:
        assert type(block) is block_type
        unit = block.gpool if block_type is GlobalPoolingBiasBlock else block.se
        assert type(unit) is unit_type
    keys = list(model.state_dict())
    assert any(".se." in k for k in keys) == (unit_type in (SqueezeExcitation, SqueezeExcitationFiLM))
    assert any(".gpool." in k for k in keys) == (unit_type is GlobalPoolingBias)


def test_film_and_gpool_parameter_layout(build: Callable[..., Any]) -> None:
    film = build("restower-film", depth=1, width=64).state_dict()
    assert film["res_blocks.0.se.fc1.weight"].shape == (16, 64, 1, 1)
    assert film["res_blocks.0.se.fc2.weight"].shape == (128, 16, 1, 1)
    assert film["res_blocks.0.se.fc2.bias"].shape == (128,)
    gpool = build("restower-gpool", depth=1, width=64).state_dict()
    assert gpool["res_blocks.0.gpool.fc.weight"].shape == (64, 128)
    assert gpool["res_blocks.0.gpool.fc.bias"].shape == (64,)


@pytest.mark.parametrize("board_size", [5, 19])
def test_heads_follow_board_size(build: Callable[..., Any], board_size: int) -> None:
    model = build("restower-small", board_size=board_size, num_actions=500, input_channels=51)
    assert model.policy_head[4].in_features == 2 * board_size * board_size
    assert model.observation_shape == (51, board_size, board_size)
    logits, value = model(make_observations(3, 51, board_size))
    assert logits.shape == (3, 500) and value.shape == (3,)


def test_legal_masks_through_the_core_interface(build: Callable[..., Any]) -> None:
    model = build("restower-small").eval()
    obs = make_observations(6, seed=1)
    mask = make_legal_masks(6, seed=1)
    with torch.no_grad():
        action, log_prob, value = model.get_action_and_value(obs, mask)
        assert mask.gather(1, action[:, None]).all()
        assert value.shape == (6,) and torch.isfinite(log_prob).all()
        best, best_log_prob, _ = model.get_action_and_value(obs, mask, deterministic=True)
        logits, _ = model(obs)
        expected = logits.masked_fill(~mask, float("-inf")).argmax(dim=1)
        assert torch.equal(best, expected)
        again, entropy, value2 = model.evaluate_actions(obs, best, mask)
        torch.testing.assert_close(again, best_log_prob)
        assert (entropy >= 0).all() and torch.equal(value, value2)
        # A 1-D mask applies to every row.
        one = torch.zeros(13527, dtype=torch.bool)
        one[[5, 77, 13000]] = True
        picked, _, _ = model.get_action_and_value(obs, one)
        assert set(picked.tolist()) <= {5, 77, 13000}
        # A row with no legal action is an error, never a silent illegal sample.
        empty = mask.clone()
        empty[3] = False
        with pytest.raises(InputError, match=r"rows \[3\]"):
            model.get_action_and_value(obs, empty)


@pytest.mark.parametrize(
    "options",
    [{"se_kind": "se"}, {"se_kind": "film"}, {"se_kind": "gpool"}, {"se_ratio": 0.0}],
    ids=["se", "film", "gpool", "no-se"],
)
def test_gradients_reach_every_parameter(build: Callable[..., Any], options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = build("restower-small", width=16, num_actions=400, **options).train()
    obs = make_observations(4, seed=3)
    mask = make_legal_masks(4, 400, seed=3, min_legal=20, max_legal=200)
    actions, _, _ = model.get_action_and_value(obs, mask)
    log_prob, entropy, value = model.evaluate_actions(obs, actions, mask)
    loss = -log_prob.mean() - 0.01 * entropy.mean() + value.pow(2).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"se_kind": "fim"}, r"se_kind: must be in \('se', 'film', 'gpool'\)"),
        ({"depth": -1}, r"depth: must be >= 0"),
        ({"width": 0}, r"width: must be >= 1"),
        ({"se_ratio": -0.5}, r"se_ratio: must be >= 0"),
        ({"se_ratio": float("nan")}, r"se_ratio: must be a finite number"),
        ({"board_size": 100}, r"board_size: must be <= 64"),
        ({"depth": "3"}, r"depth: .*expected an integer"),
        ({"dpeth": 3}, r"unknown key\(s\) dpeth"),
    ],
)
def test_bad_options_are_one_line_config_errors(
    build: Callable[..., Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build("restower-small", **options)
    assert "\n" not in str(info.value)
