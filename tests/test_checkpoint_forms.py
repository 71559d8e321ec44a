"""The core checkpoint loader: the three forms Keisei checkpoints come in, and every way a
file or a state_dict can be wrong (one CheckpointError line, the model left untouched)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from keisei_core.checkpoints import (
    COMPILE_PREFIX,
    compare_state_dict,
    load_into,
    load_weights,
    read_state_dict,
    strip_compile_prefix,
    unwrap_state_dict,
)
from keisei_core.errors import CheckpointError


class TinyNet(nn.Module):
    """Parameters, a BatchNorm (int64 buffer) and a nested Sequential, like Keisei's nets."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 9, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.stem(x))))


def _trained(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet()
    model(torch.randn(4, 3, 3, 3))  # moves the BatchNorm statistics off their defaults
    return model


def _assert_same(model: nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert list(state) == list(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def _one_line_error(excinfo: pytest.ExceptionInfo[CheckpointError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and len(message) < 600
    return message


@pytest.fixture()
def source() -> TinyNet:
    return _trained(seed=1)


@pytest.mark.parametrize(
    ("payload", "form", "stripped"),
    [
        ("bare", "state_dict", False),
        ("wrapped", "model_state_dict", False),
        ("compiled", "state_dict", True),
        ("wrapped-compiled", "model_state_dict", True),
    ],
)
def test_three_forms_load(source: TinyNet, tmp_path: Path, payload: str, form: str, stripped: bool) -> None:
    state = source.state_dict()
    # A real compile wrapper: its state_dict carries the prefix (nothing compiles until called).
    compiled_state = torch.compile(source).state_dict()
    assert all(k.startswith(COMPILE_PREFIX) for k in compiled_state)
    obj = {
        "bare": state,
        "wrapped": {"model_state_dict": state, "optimizer_state_dict": {"lr": 1e-3}, "global_timestep": 7},
        "compiled": compiled_state,
        "wrapped-compiled": {"model_state_dict": compiled_state, "black_wins": 3},
    }[payload]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    loaded = read_state_dict(path)
    assert loaded.form == form and loaded.entries == len(state) and loaded.path == str(path)
    assert loaded.stripped_prefix == (COMPILE_PREFIX if stripped else None)
    assert loaded.stripped_keys == (len(state) if stripped else 0)
    assert loaded.forms == ((form, "compiled") if stripped else (form,))
    if payload == "wrapped":
        assert loaded.other_keys == ("optimizer_state_dict", "global_timestep")
    target = TinyNet()
    load_weights(target, path)
    _assert_same(target, state)


def test_legacy_serialisation_loads(source: TinyNet, tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(source.state_dict(), path, _use_new_zipfile_serialization=False)
    target = TinyNet()
    load_weights(target, path)
    _assert_same(target, source.state_dict())


def test_loads_into_a_compiled_model_and_from_a_compiled_submodule(source: TinyNet) -> None:
    compiled = torch.compile(TinyNet())
    load_into(compiled, source.state_dict())
    _assert_same(compiled._orig_mod, source.state_dict())
    # torch.compile of a submodule puts the segment in the middle of the keys.
    inner = {k.replace("head.", "head._orig_mod.", 1): v for k, v in source.state_dict().items()}
    stripped, changed = strip_compile_prefix(inner)
    assert changed == 2 and list(stripped) == list(source.state_dict())
    target = TinyNet()
    load_into(target, inner)
    _assert_same(target, source.state_dict())


def test_mismatch_lists_missing_unexpected_misshaped_with_counts(source: TinyNet) -> None:
    state = dict(source.state_dict())
    del state["stem.bias"], state["bn.running_mean"], state["bn.running_var"], state["bn.weight"]
    state["extra.weight"] = torch.zeros(2)
    state["head.1.weight"] = torch.zeros(5, 10)
    target = TinyNet()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as excinfo:
        load_into(target, state, source="checkpoint x.pt")
    message = _one_line_error(excinfo)
    assert message.startswith("checkpoint x.pt does not fit TinyNet: ")
    assert "4 missing (stem.bias, bn.weight, bn.running_mean, ...)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "1 mis-shaped (head.1.weight: file [5, 10] vs model [5, 36])" in message
    assert message.endswith("nothing was loaded")
    _assert_same(target, before)  # nothing partially loaded


def test_mismatch_names_an_extra_prefix(source: TinyNet) -> None:
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"every checkpoint key has the extra prefix 'module\.'"):
        load_into(TinyNet(), state)


def test_compare_state_dict_of_a_fitting_state_dict_is_empty(source: TinyNet) -> None:
    mismatch = compare_state_dict(TinyNet().state_dict(), source.state_dict())
    assert not mismatch and mismatch.describe() == "0 missing, 0 unexpected, 0 mis-shaped"


class NotAllowed:
    """Any class outside torch's weights-only allow-list."""


@pytest.mark.parametrize(
    ("write", "pattern"),
    [
        (None, r"does not exist"),
        (lambda p: p.mkdir(), r"is not a file"),
        (lambda p: p.write_bytes(b""), r"empty or truncated"),
        (lambda p: p.write_bytes(b"this is not a checkpoint at all"), r"not a torch\.save file"),
        (lambda p: p.write_bytes(pickle.dumps({"a": 1})[:-3]), r"corrupt|truncated|not a torch\.save"),
        (lambda p: torch.save({"model_state_dict": {}, "cfg": NotAllowed()}, p), r"tries to run code when loaded: its pickle calls .*NotAllowed, which weights-only loading refuses"),
        (lambda p: torch.save([torch.zeros(1)], p), r"holds a list, not a state_dict"),
        (lambda p: torch.save({}, p), r"holds an empty dict"),
        (lambda p: torch.save({"step": 3, "cfg": "x"}, p), r"holds a dict with keys 'step', 'cfg': neither"),
        (lambda p: torch.save({"model_state_dict": 5}, p), r"'model_state_dict' is a int, not a state_dict"),
        (lambda p: torch.save({"model_state_dict": {"w": torch.zeros(1), "n": 3}}, p), r"entry 'n' is a int, not a tensor"),
        (lambda p: torch.save({"model_state_dict": {}}, p), r"the state_dict is empty"),
        (
            lambda p: torch.save({"w": torch.zeros(1), "_orig_mod.w": torch.zeros(1)}, p),
            r"both mean 'w' once the '_orig_mod\.' prefix",
        ),
    ],
    ids=[
        "missing", "directory", "empty", "garbage", "cut-pickle", "refused-object", "list",
        "empty-dict", "no-state-dict", "wrapper-not-dict", "non-tensor", "empty-state-dict", "duplicate-after-strip",
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, write: object, pattern: str) -> None:
    path = tmp_path / "bad.pt"
    if write is not None:
        write(path)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=pattern) as excinfo:
        read_state_dict(path)
    assert str(path) in _one_line_error(excinfo)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_one_line_error_and_model_untouched(source: TinyNet, tmp_path: Path, keep: float) -> None:
    good = tmp_path / "good.pt"
    torch.save({"model_state_dict": source.state_dict()}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * keep)])
    target = TinyNet()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match="truncated") as excinfo:
        load_weights(target, cut)
    _one_line_error(excinfo)
    _assert_same(target, before)


def test_unwrap_state_dict_works_on_objects_already_in_memory(source: TinyNet) -> None:
    loaded = unwrap_state_dict({"model_state_dict": source.state_dict(), "epoch": 2}, "in-memory checkpoint")
    assert loaded.form == "model_state_dict" and loaded.other_keys == ("epoch",) and loaded.path is None
    assert loaded.summary()["file"] == "in-memory checkpoint"
