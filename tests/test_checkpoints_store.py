"""save_checkpoint / load_checkpoint: round trips, rebuilt models, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from keisei_core import CheckpointError, load_checkpoint, save_checkpoint
from keisei_core.checkpoints import read_state_dict
from keisei_core.models import build_from_spec, resolve_options
from keisei_core.observations import make_observations
from keisei_core.plugins import PluginHost

OPTIONS = {"input_channels": 4, "board_size": 3, "num_actions": 40}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([], include_installed=False, env={}).load()


def _model(host: PluginHost, seed: int = 0, **options: int) -> nn.Module:
    spec = host.models.get("actor-critic")
    torch.manual_seed(seed)
    return build_from_spec(spec, resolve_options(spec, {**OPTIONS, **options}))


class CompiledLike(nn.Module):
    """What torch.compile returns: the model under ``_orig_mod`` (keys get the prefix)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._orig_mod(obs)  # type: ignore[no-any-return]


def test_round_trip_rebuilds_the_model_with_everything(tmp_path: Path, host: PluginHost) -> None:
    model = _model(host, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    obs = make_observations(2, 4, 3)
    model(obs)[0].sum().backward()
    optimizer.step()
    report = {"status": "compiled", "strategy": "inductor", "checks": [{"batch_size": 1, "passed": True}]}
    path = save_checkpoint(tmp_path / "ck.pt", model, optimizer=optimizer, strategy="inductor",
                           compile_report=report, metadata={"step": 7}, host=host)
    assert not list(tmp_path.glob(".ck.pt.*"))  # the temporary file was renamed away
    loaded = load_checkpoint(path, host=host)
    assert loaded.model_name == "actor-critic"
    assert loaded.model_options["num_actions"] == 40 and loaded.model_options["conv_channels"] == 16
    assert loaded.strategy == "inductor" and loaded.compile_report == report
    assert loaded.metadata == {"step": 7}
    assert loaded.versions["torch"] == torch.__version__ and loaded.versions["model_plugin"] == "builtin.models"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    model.eval()
    loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(model(obs)[0], loaded.model(obs)[0])
    fresh = torch.optim.Adam(loaded.model.parameters(), lr=1e-3)
    loaded.load_optimizer(fresh)
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_compiled_models_save_eager_keys(tmp_path: Path, host: PluginHost) -> None:
    eager = _model(host)
    wrapped = CompiledLike(eager)
    assert all(k.startswith("_orig_mod.") for k in wrapped.state_dict())
    path = save_checkpoint(tmp_path / "c.pt", wrapped, strategy="inductor", host=host)
    stored = read_state_dict(path)
    assert list(stored.state_dict) == list(eager.state_dict())
    assert stored.stripped_prefix is None and stored.form == "model_state_dict"
    assert load_checkpoint(path, host=host).strategy == "inductor"


def test_loading_is_weights_only_and_never_partial(tmp_path: Path, host: PluginHost) -> None:
    path = save_checkpoint(tmp_path / "ok.pt", _model(host), host=host)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated, host=host)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="checkpoint"):
        load_checkpoint(garbage, host=host)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", host=host)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"keisei_checkpoint": 1, "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(evil, host=host)


def test_checkpoints_that_do_not_fit_are_one_error(tmp_path: Path, host: PluginHost) -> None:
    bare = tmp_path / "bare.pt"
    torch.save(_model(host).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a keisei checkpoint"):
        load_checkpoint(bare, host=host)

    path = save_checkpoint(tmp_path / "ok.pt", _model(host), host=host)
    payload = torch.load(path, weights_only=True)
    payload["model"]["options"]["num_actions"] = 41  # weights no longer fit the recipe
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="nothing was loaded"):
        load_checkpoint(tmp_path / "mismatch.pt", host=host)

    payload = torch.load(path, weights_only=True)
    payload["model"]["name"] = "no-such-model"
    torch.save(payload, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="no-such-model"):
        load_checkpoint(tmp_path / "unknown.pt", host=host)

    payload = torch.load(path, weights_only=True)
    payload["keisei_checkpoint"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt", host=host)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, host=host).load_optimizer(torch.optim.SGD(_model(host).parameters(), lr=0.1))


def test_save_refuses_unbuildable_models_and_keeps_old_file(tmp_path: Path, host: PluginHost) -> None:
    path = save_checkpoint(tmp_path / "keep.pt", _model(host, seed=1), host=host)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="not plain data"):
        save_checkpoint(path, _model(host, seed=2), metadata={"bad": object()}, host=host)
    assert path.read_bytes() == before
    with pytest.raises(CheckpointError, match="keisei_model_name"):
        save_checkpoint(tmp_path / "plain.pt", nn.Linear(2, 2))
