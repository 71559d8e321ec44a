"""Keisei 2026's own checkpoints load key for key and reproduce its outputs.

The fixtures (tests/data) were written by tools/make_upstream_fixtures.py running Keisei
2026's model and checkpoint code at commit 08747e10cde233d5c4e4244dbf01b8bfc5c19ccc of
tachyon-beep/keisei (torch 2.13.0 CPU): for each family a tiny model with fixed weights,
saved by its save_checkpoint (optimizer, scheduler, GradScaler, RNG states, architecture
tag), and its outputs on two fixed 50-plane observations in eval and train mode. Same
float32 operations in the same order, so the bound is a few ulps (1e-5).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from keisei_plugin_keisei2026.plugin import UPSTREAM_COMMIT

from keisei_core.checkpoints import load_weights, read_state_dict
from keisei_core.heads import read_outputs, scalar_value_from_wdl

ARCHITECTURES = ("se_resnet", "resnet", "mlp", "transformer")

NAMES = {
    "se_resnet": "keisei2026-se-resnet-tiny",
    "resnet": "keisei2026-resnet",
    "mlp": "keisei2026-mlp",
    "transformer": "keisei2026-transformer",
}
TOL = {"rtol": 1e-5, "atol": 1e-5}


def test_fixture_commit_is_the_named_one(upstream_outputs: dict[str, Any]) -> None:
    assert upstream_outputs["upstream_commit"] == UPSTREAM_COMMIT


def built(build: Callable[..., Any], architecture: str, params: dict[str, Any]) -> Any:
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return build(NAMES[architecture], **options)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_state_dict_layout_is_upstreams_key_for_key(
    architecture: str, build: Callable[..., Any], upstream_outputs: dict[str, Any],
    upstream_checkpoint: Callable[[str], Path],
) -> None:
    loaded = read_state_dict(upstream_checkpoint(architecture))
    model = built(build, architecture, upstream_outputs[architecture]["params"])
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    theirs = [(k, tuple(v.shape)) for k, v in loaded.state_dict.items()]
    assert ours == theirs


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_upstream_checkpoint_reproduces_upstream_outputs(
    architecture: str, mode: str, build: Callable[..., Any], upstream_outputs: dict[str, Any],
    upstream_checkpoint: Callable[[str], Path],
) -> None:
    reference = upstream_outputs[architecture]
    if mode not in reference:
        pytest.skip(f"{architecture} has no batch norm (and dropout in train mode): eval only")
    model = built(build, architecture, reference["params"])
    report = load_weights(model, upstream_checkpoint(architecture))
    assert report.architecture == architecture
    want = reference[mode]
    model.train(mode == "train")
    with torch.no_grad():
        out = read_outputs(model, model(upstream_outputs["obs"]))
    if architecture == "se_resnet":
        space = model.keisei_spaces.actions
        torch.testing.assert_close(out.spatial_policy(space), want["policy_logits"], **TOL)
        torch.testing.assert_close(out.value_wdl_logits, want["value_logits"], **TOL)
        torch.testing.assert_close(out.score_lead, want["score_lead"].squeeze(-1), **TOL)
        # PPO's scalar is Keisei 2026's P(W) - P(L) of the same logits.
        probs = torch.softmax(want["value_logits"], dim=-1)
        torch.testing.assert_close(out.value, probs[:, 0] - probs[:, 2], **TOL)
    else:
        torch.testing.assert_close(out.policy_logits, want["policy_logits"], **TOL)
        torch.testing.assert_close(out.value, want["value"].squeeze(-1), **TOL)


def test_spatial_policy_flattens_square_major(build: Callable[..., Any]) -> None:
    """Action ``(row * 9 + col) * 139 + move_type`` is logit ``[row, col, move_type]`` of the
    (B, 9, 9, 139) policy, Keisei 2026's SpatialActionMapper order."""
    model = build(NAMES["se_resnet"]).eval()
    from keisei_core.spaces import observations_for

    obs = observations_for(model, 2, seed=3)
    space = model.keisei_spaces.actions
    with torch.no_grad():
        logits = model(obs)[0]
        planes = model.policy_conv2(torch.relu(model.policy_bn1(model.policy_conv1(model.blocks(
            torch.relu(model.input_bn(model.input_conv(obs))))))))
    for row, col, move in ((0, 0, 0), (0, 1, 5), (8, 8, 138), (4, 7, 132)):
        assert torch.equal(logits[:, space.index(row, col, move)], planes[:, move, row, col])


def test_scalar_value_from_wdl_is_p_win_minus_p_loss() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, -10.0], [-3.0, 5.0, -3.0], [1.0, 2.0, 30.0]])
    value = scalar_value_from_wdl(logits)
    probs = logits.softmax(-1)
    torch.testing.assert_close(value, probs[:, 0] - probs[:, 2])
    assert value[0] == 0 and value[1] > 0.99 and abs(float(value[2])) < 1e-6 and value[3] < -0.99
