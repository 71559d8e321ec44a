"""Keisei checkpoints of both original networks load; ``keisei info --weights`` reports them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import keisei_core.plugins
from keisei_core.checkpoints import load_weights, read_state_dict
from keisei_core.cli.main import main

DTYPES = {"float32": torch.float32, "int64": torch.int64, None: torch.float32}


def checkpoint_from_listing(listing: Any, seed: int) -> dict[str, torch.Tensor]:
    """What the original code saves: one tensor per listed key, in the listed order and shape."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape, dtype in listing:
        if DTYPES[dtype] == torch.int64:
            out[key] = torch.randint(0, 1000, shape, generator=gen)
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


@pytest.mark.parametrize(
    ("listing_fixture", "model_name"),
    [("restower_listing", "restower"), ("baseline_listing", "actor-critic")],
)
def test_checkpoint_written_from_reference_listing_loads(
    build: Callable[..., Any], request: pytest.FixtureRequest, tmp_path: Path, listing_fixture: str, model_name: str
) -> None:
    listing = request.getfixturevalue(listing_fixture)
    saved = checkpoint_from_listing(listing, seed=0)
    path = tmp_path / f"{model_name}.pt"
    torch.save({"model_state_dict": saved, "optimizer_state_dict": {}, "global_timestep": 10}, path)
    model = build(model_name)
    loaded = load_weights(model, path)
    assert loaded.entries == len(listing) and loaded.other_keys == ("optimizer_state_dict", "global_timestep")
    state = model.state_dict()
    assert list(state) == [key for key, _, _ in listing]
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], int]:
    """``keisei`` with only this plugin installed-enabled; the process-wide host the CLI
    replaces is put back afterwards so other tests see theirs."""
    monkeypatch.setenv("KEISEI_PLUGINS", "restower")
    monkeypatch.setattr(keisei_core.plugins, "_host", keisei_core.plugins._host)
    return main


@pytest.fixture()
def small_checkpoints(build: Callable[..., Any], tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    model = build("restower-small")
    compiled = torch.compile(model)  # lazy: nothing compiles until it is called
    files = {
        "bare": model.state_dict(),
        "wrapped": {"model_state_dict": model.state_dict(), "global_timestep": 5},
        "compiled": compiled.state_dict(),
    }
    paths = {}
    for name, payload in files.items():
        paths[name] = tmp_path / f"{name}.pt"
        torch.save(payload, paths[name])
    return paths


@pytest.mark.parametrize(
    ("form", "forms", "prefix"),
    [
        ("bare", ["state_dict"], None),
        ("wrapped", ["model_state_dict"], None),
        ("compiled", ["state_dict", "compiled"], "_orig_mod."),
    ],
)
def test_info_weights_shows_what_loaded(
    cli: Callable[[list[str]], int],
    small_checkpoints: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    form: str,
    forms: list[str],
    prefix: str | None,
) -> None:
    path = small_checkpoints[form]
    assert cli(["info", "restower-small", "--weights", str(path), "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)["weights"]
    assert weights["file"] == str(path)
    assert weights["entries"] == 61 and weights["forms"] == forms
    assert weights["stripped_prefix"] == prefix
    assert weights["stripped_keys"] == (61 if prefix else 0)
    assert cli(["info", "restower-small", "--weights", str(path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("weights"))
    assert f"{path}: 61 entries loaded, form {'+'.join(forms)}" in line


def test_info_weights_mismatch_and_truncation_are_one_line(
    cli: Callable[[list[str]], int],
    small_checkpoints: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    assert cli(["info", "restower-small", "--set", "se_kind=film", "--weights", str(small_checkpoints["bare"])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert (
        "0 missing, 0 unexpected, 4 mis-shaped (res_blocks.0.se.fc2.weight: file [32, 8, 1, 1] vs "
        "model [64, 8, 1, 1], res_blocks.0.se.fc2.bias: file [32] vs model [64], res_blocks.1.se.fc2.weight"
    ) in err and err.endswith(", ...); nothing was loaded")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(small_checkpoints["bare"].read_bytes()[:5000])
    assert cli(["info", "restower-small", "--weights", str(truncated)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "truncated" in err


def test_compiled_and_eager_checkpoints_load_into_each_other(
    build: Callable[..., Any], small_checkpoints: dict[str, Path]
) -> None:
    eager = build("restower-small")
    load_weights(eager, small_checkpoints["compiled"])
    compiled = torch.compile(build("restower-small"))
    load_weights(compiled, small_checkpoints["bare"])
    reference = read_state_dict(small_checkpoints["wrapped"]).state_dict
    for key, value in reference.items():
        assert torch.equal(eager.state_dict()[key], value)
        assert torch.equal(compiled.state_dict()["_orig_mod." + key], value)
