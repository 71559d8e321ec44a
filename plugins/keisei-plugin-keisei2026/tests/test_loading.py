"""Keisei 2026 checkpoints through load_weights and ``keisei info --weights``: the
architecture tag picks or checks the model; input-channel adaptation is explicit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from keisei_core.checkpoints import load_weights
from keisei_core.cli.main import main
from keisei_core.errors import CheckpointError
from keisei_core.spaces import observations_for


def test_wrong_architecture_tag_is_refused_before_loading(
    build: Callable[..., Any], upstream_checkpoint: Callable[[str], Path]
) -> None:
    model = build("keisei2026-resnet", hidden_size=8, num_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"architecture 'se_resnet'.*takes 'resnet'.*nothing was loaded"):
        load_weights(model, upstream_checkpoint("se_resnet"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_counters_and_other_entries_are_reported(
    build: Callable[..., Any], upstream_checkpoint: Callable[[str], Path]
) -> None:
    report = load_weights(build("keisei2026-se-resnet-tiny"), upstream_checkpoint("se_resnet"))
    summary = report.summary()
    assert summary["architecture"] == "se_resnet"
    assert summary["counters"] == {"epoch": 3, "step": 1000, "world_size": 1}
    assert {"optimizer_state_dict", "rng_states", "grad_scaler_state_dict", "scheduler_state_dict"} <= set(summary["other_keys"])
    assert summary["adapted"] == []


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_info_picks_the_model_by_architecture_tag(
    upstream_checkpoint: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["info", "--weights", str(upstream_checkpoint("se_resnet")), "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["name"] == "keisei2026-se-resnet-tiny"
    assert info["value_head"] == "wdl" and info["output_shapes"]["value_wdl"] == [3]
    assert "spatial" in info["action_space"] and "keisei-2026" in info["observation_space"]
    assert info["weights"]["entries"] == 62 and info["weights"]["architecture"] == "se_resnet"


def test_info_says_when_no_preset_fits(
    upstream_checkpoint: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The resnet fixture is 8 x 2, not the registered 64 x 4 preset.
    code, _, err = run_cli(["info", "--weights", str(upstream_checkpoint("resnet"))], capsys)
    assert code == 2
    assert "fits none of the presets" in err and "keisei2026-resnet" in err and "Traceback" not in err


def test_info_with_a_named_model_and_options(
    upstream_checkpoint: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(upstream_checkpoint("resnet"))
    code, out, _ = run_cli(["info", "keisei2026-resnet", "--set", "hidden_size=8", "--set", "num_layers=2", "--weights", path], capsys)
    assert code == 0 and "architecture 'resnet'" in out and "epoch 4, step 1001" in out


def _stem_checkpoint(build: Callable[..., Any], tmp_path: Path, channels: int) -> tuple[Any, Path]:
    source = build("keisei2026-se-resnet-tiny", input_channels=channels).eval()
    path = tmp_path / f"stem{channels}.pt"
    torch.save({"model_state_dict": source.state_dict(), "architecture": "se_resnet"}, path)
    return source, path


def test_input_channels_mismatch_is_refused_without_the_option(build: Callable[..., Any], tmp_path: Path) -> None:
    _, path = _stem_checkpoint(build, tmp_path, 46)
    with pytest.raises(CheckpointError, match=r"1 mis-shaped \(input_conv.weight: file \[16, 46, 3, 3\] vs model \[16, 50, 3, 3\]\)"):
        load_weights(build("keisei2026-se-resnet-tiny"), path)


def test_padded_stem_computes_what_the_narrow_network_computed(build: Callable[..., Any], tmp_path: Path) -> None:
    source, path = _stem_checkpoint(build, tmp_path, 46)
    target = build("keisei2026-se-resnet-tiny").eval()
    report = load_weights(target, path, adapt_input_channels=True)
    assert report.adapted == ("input_conv.weight: 46 -> 50 input channels (zero-padded)",)
    obs = observations_for(target, 3, seed=9)
    with torch.no_grad():
        for want, got in zip(source(obs[:, :46]), target(obs), strict=True):
            torch.testing.assert_close(got, want)


def test_truncated_stem_is_reported(build: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, path = _stem_checkpoint(build, tmp_path, 51)
    target = build("keisei2026-se-resnet-tiny")
    report = load_weights(target, path, adapt_input_channels=True)
    assert report.adapted == ("input_conv.weight: 51 -> 50 input channels (truncated)",)
    assert torch.equal(target.input_conv.weight, source.input_conv.weight[:, :50])
    code, out, _ = run_cli(["info", "keisei2026-se-resnet-tiny", "--weights", str(path), "--adapt-input-channels"], capsys)
    assert code == 0 and "ADAPTED input_conv.weight: 51 -> 50 input channels (truncated)" in out


def test_adaptation_never_hides_other_mismatches(build: Callable[..., Any], tmp_path: Path) -> None:
    source = build("keisei2026-se-resnet-tiny", input_channels=46, value_fc_size=8)
    path = tmp_path / "two.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(CheckpointError, match="can only be adapted when the one mismatch is the stem"):
        load_weights(build("keisei2026-se-resnet-tiny"), path, adapt_input_channels=True)
