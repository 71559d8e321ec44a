"""Issue 16: every checkpoint file is whole or refused, with one line that says why."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from keisei_core.api import build_model
from keisei_core.checkpoints import load_weights, read_state_dict
from keisei_core.checkpoints.store import load_checkpoint, save_checkpoint
from keisei_core.errors import CheckpointError


def _small() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("actor-critic", conv_channels=2, num_actions=30, board_size=5, input_channels=7)


def _flip_tensor_byte(path: Path, tensor: torch.Tensor) -> None:
    data = bytearray(path.read_bytes())
    needle = bytes(tensor.detach().contiguous().view(torch.uint8).reshape(-1)[:16].tolist())
    offset = data.find(needle)
    assert offset > 0
    data[offset + 3] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_keisei_checkpoint_is_refused(tmp_path: Path) -> None:
    model = _small()
    path = save_checkpoint(tmp_path / "ck.pt", model)
    assert load_checkpoint(path).integrity == ("zip CRC-32 of 12 members", "SHA-256 of 6 tensors (written at save)")
    _flip_tensor_byte(path, model.policy_head.weight)
    with pytest.raises(CheckpointError, match=r"is damaged: Bad CRC-32 for file '.*data/\d+' \(zip CRC-32 check\); nothing was loaded"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="zip CRC-32 check"):
        read_state_dict(path)


def test_changed_tensor_with_valid_zip_is_caught_by_the_per_tensor_checksum(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", _small())
    payload = torch.load(path, weights_only=True)
    payload["model_state_dict"]["conv.bias"][0] += 1.0  # re-saved: the zip CRCs are right again
    torch.save(payload, tmp_path / "edited.pt")
    message = r"do not match the SHA-256 checksums written at save \(changed: conv.bias\); nothing was loaded"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=message):
        load_weights(_small(), tmp_path / "edited.pt")


def test_foreign_files_get_the_zip_crc_check_and_the_report_says_so(tmp_path: Path) -> None:
    model = _small()
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    loaded = load_weights(_small(), tmp_path / "bare.pt")
    assert loaded.integrity == ("zip CRC-32 of 12 members",)
    assert loaded.summary()["integrity"] == ["zip CRC-32 of 12 members"]
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert load_weights(_small(), tmp_path / "legacy.pt").integrity == (
        "none: the legacy (non-zip) torch.save format carries no checksum",
    )
    _flip_tensor_byte(tmp_path / "bare.pt", model.conv.weight)
    with pytest.raises(CheckpointError, match="Bad CRC-32"):
        load_weights(_small(), tmp_path / "bare.pt")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_that_calls_os_system_is_refused_as_code(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], protocol: int, legacy: bool
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    payload = {"model_state_dict": _small().state_dict(), "x": _RunsCode(marker)}
    torch.save(payload, path, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            load_weights(_small(), path)
    message = str(info.value)
    assert f"checkpoint {path} tries to run code when loaded: its pickle calls {os.system.__module__}.system" in message
    assert "nothing was executed" in message and "\n" not in message
    assert not marker.exists()
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""


def test_int8_and_nan_weights_are_refused_unless_cast_is_allowed(tmp_path: Path) -> None:
    state = _small().state_dict()
    quantised = dict(state, **{"conv.weight": state["conv.weight"].mul(100).to(torch.int8)})
    torch.save(quantised, tmp_path / "int8.pt")
    target = _small()
    before = target.conv.weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"another dtype than the model \(conv.weight: int8 -> float32\); loading would cast them: refused, nothing was loaded \(pass allow_cast=True"):
        load_weights(target, tmp_path / "int8.pt")
    assert torch.equal(target.conv.weight, before)
    loaded = load_weights(target, tmp_path / "int8.pt", allow_cast=True)
    assert loaded.cast == ("conv.weight: int8 -> float32",) and loaded.summary()["cast"] == ["conv.weight: int8 -> float32"]
    assert target.conv.weight.dtype == torch.float32

    broken = dict(state, **{"policy_head.bias": state["policy_head.bias"].clone().fill_(float("nan"))})
    torch.save(broken, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"holds NaN or infinite weights in policy_head.bias; refused, nothing was loaded"):
        load_weights(_small(), tmp_path / "nan.pt", allow_cast=True)
    payload = torch.load(save_checkpoint(tmp_path / "ck.pt", _small()), weights_only=True)
    payload["model_state_dict"]["conv.weight"] = payload["model_state_dict"]["conv.weight"].half()
    del payload["checksums"]
    torch.save(payload, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match=r"conv.weight: float16 -> float32"):
        load_checkpoint(tmp_path / "half.pt")
    assert load_checkpoint(tmp_path / "half.pt", allow_cast=True).cast == ("conv.weight: float16 -> float32",)


def test_absurd_recipe_is_one_error_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = torch.load(save_checkpoint(tmp_path / "ck.pt", _small()), weights_only=True)
    payload["model"]["options"]["conv_channels"] = 10**12
    torch.save(payload, tmp_path / "huge.pt")
    with pytest.raises(CheckpointError, match=r"does not fit the model its recipe builds \('actor-critic'\): .*conv.weight: file \[2, 7, 3, 3\] vs model \[1000000000000, 7, 3, 3\]"):
        load_checkpoint(tmp_path / "huge.pt")
    import keisei_core.model_size as model_size

    monkeypatch.setattr(model_size, "memory_limit_bytes", lambda: 1024)
    with pytest.raises(CheckpointError, match=r"asks for a model of .* KiB, more than this machine's 1.0 KiB of memory"):
        load_checkpoint(tmp_path / "ck.pt")


KILLED_WRITER = """
import os, signal, sys
from keisei_core.atomic_files import atomic_open
with atomic_open(sys.argv[1], "wb") as handle:
    handle.write(b"x" * 100_000)
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path: Path) -> None:
    target = tmp_path / "ck.pt"
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
        assert done.returncode == -signal.SIGKILL
    # Each killed writer's temporary was removed by the next writer: only the last is left.
    stale = sorted(p.name for p in tmp_path.iterdir())
    assert len(stale) == 1 and stale[0].startswith(".ck.pt.") and stale[0].endswith(".tmp")
    # A live writer's temporary (here: this test's parent process) is never touched.
    live = tmp_path / f".ck.pt.keisei-{stale[0].split('keisei-')[1].rsplit('-', 1)[0]}-{os.getppid()}.abcd.tmp"
    live.write_bytes(b"in progress")
    save_checkpoint(target, _small())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "ck.pt"])
