"""The three research families through the core interface: shapes, masks, gradients,
state_dict round trips, options and registration."""

from __future__ import annotations

import io

import pytest
import torch

from keisei_core.api import build_model, get_model_spec
from keisei_core.errors import ConfigError, InputError
from keisei_core.introspect import model_shapes
from keisei_core.observations import make_legal_masks, make_observations
from keisei_core.plugins import PluginHost

TINY = ["cell-lattice-tiny", "experts-with-ghosts-tiny", "square-transformer-tiny"]
DEFAULTS = ["cell-lattice", "experts-with-ghosts", "square-transformer"]


def _build(name: str, seed: int = 0, **options: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **options)


def test_plugin_registers_every_family_and_preset() -> None:
    host = PluginHost(env={"KEISEI_PLUGINS": "research"}).load()
    names = {r.spec.name for r in host.models.match(None)}
    assert set(TINY + DEFAULTS) <= names
    families = {host.models.get(n).family for n in TINY}
    assert families == {"cell-lattice", "experts-with-ghosts", "square-transformer"}


@pytest.mark.parametrize("name", TINY)
def test_interface_shapes_masks_and_finiteness(name: str) -> None:
    model = _build(name).eval()
    obs, masks = make_observations(5, seed=3), make_legal_masks(5, seed=3)
    logits, value = model(obs)
    assert logits.shape == (5, 13527) and value.shape == (5,)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()
    action, log_prob, value2 = model.get_action_and_value(obs, masks)
    assert action.shape == (5,) and bool(masks.gather(1, action[:, None]).all())
    assert torch.isfinite(log_prob).all() and bool((log_prob <= 0).all())
    best, _, _ = model.get_action_and_value(obs, masks, deterministic=True)
    masked = logits.masked_fill(~masks, float("-inf"))
    assert torch.equal(best, masked.argmax(dim=-1))
    log_prob2, entropy, _ = model.evaluate_actions(obs, action, masks)
    torch.testing.assert_close(log_prob2, log_prob)
    assert bool((entropy >= 0).all()) and torch.isfinite(entropy).all()
    torch.testing.assert_close(value2, value)
    with pytest.raises(InputError):
        model.get_action_and_value(obs[0])


@pytest.mark.parametrize("name", TINY)
def test_declared_shapes_and_repeated_blocks(name: str) -> None:
    model = _build(name)
    shapes = model_shapes(model)
    assert shapes.observation == (46, 9, 9) and shapes.num_actions == 13527
    for attribute in model.keisei_repeated_blocks:
        assert isinstance(getattr(model, attribute), torch.nn.Module)


@pytest.mark.parametrize("name", TINY)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = _build(name).train()
    obs, masks = make_observations(6, seed=1), make_legal_masks(6, seed=1)
    action, _, _ = model.get_action_and_value(obs, masks)
    log_prob, entropy, value = model.evaluate_actions(obs, action, masks)
    (-(log_prob.mean()) - 0.01 * entropy.mean() + value.square().mean()).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert bool(param.grad.abs().sum() > 0), f"{pname} got an all-zero gradient"


@pytest.mark.parametrize("name", TINY)
def test_state_dict_round_trip(name: str) -> None:
    source, target = _build(name, seed=1), _build(name, seed=2)
    obs = make_observations(3, seed=5)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert list(state) == list(target.state_dict())
    target.load_state_dict(state)
    source.eval(), target.eval()
    for a, b in zip(source(obs), target(obs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_small_channel_and_action_counts_work() -> None:
    for name in TINY:
        model = _build(name, input_channels=51, num_actions=100)
        logits, value = model(make_observations(2, channels=51))
        assert logits.shape == (2, 100) and value.shape == (2,)


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("square-transformer", {"width": 30, "heads": 4}, "multiple of heads"),
        ("experts-with-ghosts", {"width": 30, "heads": 4}, "multiple of heads"),
        ("cell-lattice", {"depth": 4, "steps": 2}, "steps: must be >= depth (4)"),
        ("cell-lattice", {"neighbourhood": 7}, "neighbourhood"),
        ("experts-with-ghosts", {"saturation": 0}, "saturation"),
        ("cell-lattice", {"cell_width": "64"}, "cell_width"),
    ],
)
def test_bad_options_are_one_line_config_errors(name: str, options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(name, **options)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_default_sizes() -> None:
    # The lattice's cell is the research stack's size (about 25K parameters).
    lattice = _build("cell-lattice")
    assert 20_000 <= lattice.cells.parameters_per_cell() <= 30_000
    for name in DEFAULTS:
        assert get_model_spec(name).family is not None
