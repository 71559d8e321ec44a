"""keisei_core.atomic_files: a file appears complete under its final name, or not at all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from keisei_core.atomic_files import atomic_open, atomic_path, write_bytes_atomic, write_json_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_create_folders_and_replace_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "results.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"b": [1, 2]})
    assert json.loads(target.read_text(encoding="utf-8")) == {"b": [1, 2]}
    write_bytes_atomic(tmp_path / "blob.bin", b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(target.parent) == [] and _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json_atomic(target, {"kept": True})
    with pytest.raises(ValueError, match="JSON compliant"):
        write_json_atomic(target, {"bad": math.nan})  # strict JSON: NaN is refused mid-write
    with pytest.raises(RuntimeError, match="disk full"), atomic_open(target, "wb") as handle:
        handle.write(b"half a file")
        raise RuntimeError("disk full")
    assert json.loads(target.read_text(encoding="utf-8")) == {"kept": True}
    assert _leftovers(tmp_path) == []


def test_atomic_path_renames_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "model.pt2"
    with atomic_path(target, suffix=".pt2") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".pt2" and temporary != target
        temporary.write_bytes(b"package")
    assert target.read_bytes() == b"package"
    with pytest.raises(KeyboardInterrupt), atomic_path(target, suffix=".pt2") as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"package"
    assert _leftovers(tmp_path) == []


def test_only_whole_file_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be"), atomic_open(tmp_path / "x", "a"):
        pass
