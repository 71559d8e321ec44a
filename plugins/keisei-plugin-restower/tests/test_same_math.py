"""Same math as Keisei: an independent functional re-implementation of the original
ActorCriticResTower forward, written from KEISEI-MODELS.md (not from the plugin's code),
reads the same state_dict and must give the same outputs.

The SE-FiLM and global-pooling-bias variants are checked the same way against their
one-line math as documented in keisei_plugin_restower.blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.checkpoints import load_weights
from keisei_core.observations import make_observations

Tensors = Mapping[str, torch.Tensor]


def _conv(sd: Tensors, prefix: str, x: torch.Tensor, padding: int = 0) -> torch.Tensor:
    return F.conv2d(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], padding=padding)


def _bn(sd: Tensors, prefix: str, x: torch.Tensor, training: bool) -> torch.Tensor:
    # Clones: the reference must not move the running statistics it is handed.
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"].clone(),
        sd[f"{prefix}.running_var"].clone(),
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=training,
        momentum=0.1,
        eps=1e-5,
    )


def _head(sd: Tensors, prefix: str, x: torch.Tensor, training: bool) -> torch.Tensor:
    # nn.Sequential(Conv2d(W, 2, 1), BatchNorm2d(2), ReLU, Flatten, Linear(2 * 81, out))
    h = F.relu(_bn(sd, f"{prefix}.1", _conv(sd, f"{prefix}.0", x), training))
    return F.linear(h.flatten(1), sd[f"{prefix}.4.weight"], sd[f"{prefix}.4.bias"])


def reference_forward(
    sd: Tensors, obs: torch.Tensor, *, kind: str = "se", training: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keisei's ActorCriticResTower.forward over a state_dict (kind ``se`` is the original)."""
    depth = len({k.split(".")[1] for k in sd if k.startswith("res_blocks.")})
    x = F.relu(_bn(sd, "bn_stem", _conv(sd, "stem", obs, padding=1), training))
    for i in range(depth):
        p = f"res_blocks.{i}"
        bias = None
        if f"{p}.gpool.fc.weight" in sd:  # KataGo-style: FC over [mean, max] of the block input
            pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
            bias = F.linear(pooled, sd[f"{p}.gpool.fc.weight"], sd[f"{p}.gpool.fc.bias"])[:, :, None, None]
        out = F.relu(_bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", x, padding=1), training))
        if bias is not None:
            out = out + bias
        out = _bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", out, padding=1), training)
        if f"{p}.se.fc1.weight" in sd:
            s = out.mean(dim=(2, 3), keepdim=True)
            s = F.relu(_conv(sd, f"{p}.se.fc1", s))
            s = _conv(sd, f"{p}.se.fc2", s)
            if kind == "film":
                gate, shift = s[:, : out.shape[1]], s[:, out.shape[1] :]
                out = out * torch.sigmoid(gate) + shift
            else:
                out = out * torch.sigmoid(s)
        x = F.relu(out + x)
    return _head(sd, "policy_head", x, training), _head(sd, "value_head", x, training).squeeze(-1)


def randomised_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state_dict with BatchNorm statistics and affine terms and every bias made
    non-trivial, so an identity BatchNorm or a zero bias cannot hide a wrong formula."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=gen) * 1.5 + 0.5
        elif key.endswith(("running_mean", ".bias")):
            value = torch.randn(value.shape, generator=gen) * 0.2
        elif key.endswith("num_batches_tracked"):
            value = torch.tensor(7)
        elif key.endswith(".weight") and value.dim() == 1:  # BatchNorm gamma
            value = torch.rand(value.shape, generator=gen) + 0.5
        out[key] = value
    return out


@pytest.mark.parametrize("name", ["restower-small", "restower-film", "restower-gpool", "restower-no-se"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_variants_match_reference(build: Callable[..., Any], name: str, training: bool) -> None:
    torch.manual_seed(0)
    options = {} if name == "restower-small" else {"depth": 2, "width": 24, "num_actions": 300}
    model = build(name, **options)
    sd = randomised_state_dict(model, seed=1)
    model.load_state_dict(sd)
    model.train(training)
    obs = make_observations(4, seed=2)
    kind = model.keisei_model_options["se_kind"]
    with torch.no_grad():
        logits, value = model(obs)
        ref_logits, ref_value = reference_forward(sd, obs, kind=kind, training=training)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(value, ref_value, rtol=1e-4, atol=1e-4)


def test_keisei_checkpoint_gives_the_same_outputs(build: Callable[..., Any], tmp_path: Path) -> None:
    """The default 9 x 256 model: a Keisei training checkpoint (dict with model_state_dict),
    loaded through the core loader, gives the original network's outputs."""
    torch.manual_seed(0)
    donor = build("restower")
    sd = randomised_state_dict(donor, seed=3)
    del donor
    path = tmp_path / "keisei.pt"
    torch.save({"model_state_dict": sd, "global_timestep": 123}, path)
    model = build("restower")
    loaded = load_weights(model, path)
    assert loaded.form == "model_state_dict" and loaded.entries == 187
    model.eval()
    obs = make_observations(2, seed=4)
    with torch.no_grad():
        logits, value = model(obs)
        ref_logits, ref_value = reference_forward(sd, obs)
    assert logits.shape == (2, 13527) and value.shape == (2,)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(value, ref_value, rtol=1e-4, atol=1e-4)


@settings(max_examples=20)
@given(
    depth=st.integers(0, 3),
    width=st.integers(1, 16),
    se_ratio=st.sampled_from([0.0, 0.1, 0.25, 1.0]),
    kind=st.sampled_from(["se", "film", "gpool"]),
    board_size=st.integers(5, 19),
    training=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_configs_match_reference(
    build: Callable[..., Any],
    depth: int,
    width: int,
    se_ratio: float,
    kind: str,
    board_size: int,
    training: bool,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    model = build(
        "restower", depth=depth, width=width, se_ratio=se_ratio, se_kind=kind,
        board_size=board_size, input_channels=5, num_actions=37,
    )
    sd = randomised_state_dict(model, seed=seed)
    model.load_state_dict(sd)
    model.train(training)
    obs = make_observations(3, 5, board_size, seed=seed)
    with torch.no_grad():
        logits, value = model(obs)
        ref_logits, ref_value = reference_forward(sd, obs, kind=kind, training=training)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(value, ref_value, rtol=1e-4, atol=1e-4)
