"""Reading model weights from checkpoint files and loading them into models, all or nothing.

Keisei checkpoints come in three forms, and every one of them loads:

- a bare state_dict (``torch.save(model.state_dict(), path)``);
- a dict holding it under ``model_state_dict`` (Keisei's training checkpoints; the other
  entries -- optimizer state, counters -- are reported, not used);
- either of those saved from a ``torch.compile``'d model, whose keys carry the
  ``_orig_mod.`` segment (Keisei defect 3); the segment is removed wherever it appears, so
  a state_dict of a compiled submodule loads too.

Files are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
Every problem a user can cause (missing, truncated or corrupt file, an object that
weights-only loading refuses, a state_dict that does not fit the model) is one
:class:`~keisei_core.errors.CheckpointError` line, and a model is changed only when the
whole state_dict fits it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

WRAPPER_KEY = "model_state_dict"
COMPILE_SEGMENT = "_orig_mod"
COMPILE_PREFIX = COMPILE_SEGMENT + "."
FORM_BARE = "state_dict"
FORM_WRAPPED = WRAPPER_KEY
# How many keys of each kind a mismatch message names before it only counts.
SHOWN_KEYS = 3

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


@attrs.frozen
class LoadedStateDict:
    """A state_dict read from a checkpoint, and how it was found there.

    ``form`` is ``"state_dict"`` (bare) or ``"model_state_dict"`` (wrapped);
    ``stripped_prefix`` is ``"_orig_mod."`` when that segment was removed from
    ``stripped_keys`` keys (the checkpoint came from a compiled model), else ``None``;
    ``other_keys`` are the wrapper's other top-level entries (optimizer state, counters).
    """

    state_dict: dict[str, torch.Tensor]
    source: str
    form: str
    path: str | None = None
    stripped_prefix: str | None = None
    stripped_keys: int = 0
    other_keys: tuple[str, ...] = ()

    @property
    def entries(self) -> int:
        return len(self.state_dict)

    @property
    def forms(self) -> tuple[str, ...]:
        """Every form detected, e.g. ``("model_state_dict", "compiled")``."""
        return (self.form, "compiled") if self.stripped_prefix else (self.form,)

    def summary(self) -> dict[str, Any]:
        """What was read, for ``keisei info --weights`` and reports."""
        return {
            "file": self.path if self.path is not None else self.source,
            "entries": self.entries,
            "forms": list(self.forms),
            "stripped_prefix": self.stripped_prefix,
            "stripped_keys": self.stripped_keys,
            "other_keys": list(self.other_keys),
        }


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def torch_load(path: str | Path, *, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as one CheckpointError line."""
    import pickle

    import torch

    where = str(path)
    file = Path(path)
    if not file.exists():
        raise CheckpointError(f"checkpoint file {where} does not exist")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {where} is not a file")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _UNSUPPORTED_GLOBAL.search(str(exc))
        if refused:
            raise CheckpointError(
                f"checkpoint {where} holds a {refused.group(1)} object, which weights-only loading "
                "refuses (it could run code); re-save it with only tensors and plain containers, "
                f"e.g. torch.save(checkpoint['{WRAPPER_KEY}'], path)"
            ) from None
        raise CheckpointError(
            f"checkpoint {where} is corrupt or not a torch.save file ({_one_line(str(exc)) or 'unpickling failed'})"
        ) from None
    except EOFError:
        raise CheckpointError(f"checkpoint {where} is empty or truncated (the data ends early)") from None
    except Exception as exc:
        # Whatever bytes are in the file, the reader fails with some exception: damaged zip
        # archives raise RuntimeError from the stream reader, arbitrary bytes KeyError or
        # IndexError from the unpickler. All of them mean the file is not a usable checkpoint.
        if isinstance(exc, RuntimeError | OSError | ValueError):
            detail = _one_line(str(exc).split(". ")[0]) or type(exc).__name__
        else:
            detail = f"unrecognised data, {type(exc).__name__}"
        raise CheckpointError(
            f"checkpoint {where} is truncated, corrupt or not a torch.save file ({detail})"
        ) from None


def strip_compile_prefix(state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> tuple[dict[str, torch.Tensor], int]:
    """Remove the ``_orig_mod`` segment that ``torch.compile`` puts into keys; returns the
    new dict (order kept) and how many keys changed."""
    out: dict[str, torch.Tensor] = {}
    changed = 0
    for key, value in state_dict.items():
        parts = key.split(".")
        kept = [p for p in parts if p != COMPILE_SEGMENT]
        new_key = ".".join(kept)
        if len(kept) != len(parts):
            changed += 1
        if new_key in out:
            raise CheckpointError(
                f"{source}: key '{key}' and another key both mean '{new_key}' once the "
                f"'{COMPILE_PREFIX}' prefix of compiled models is removed"
            )
        out[new_key] = value
    return out, changed


def _check_tensors(state_dict: Mapping[Any, Any], source: str) -> None:
    import torch

    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source}: state_dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: state_dict entry '{key}' is a {type(value).__name__}, not a tensor"
            )


def unwrap_state_dict(obj: Any, source: str) -> LoadedStateDict:
    """Find the state_dict in an object read from a checkpoint (any of the three forms)."""
    import torch

    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}, not a state_dict or a dict with '{WRAPPER_KEY}'"
        )
    if WRAPPER_KEY in obj:
        inner = obj[WRAPPER_KEY]
        if not isinstance(inner, Mapping):
            raise CheckpointError(f"{source}: '{WRAPPER_KEY}' is a {type(inner).__name__}, not a state_dict")
        form, state_dict = FORM_WRAPPED, inner
        other = tuple(str(k) for k in obj if k != WRAPPER_KEY)
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        form, state_dict, other = FORM_BARE, obj, ()
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:SHOWN_KEYS]) + (", ..." if len(obj) > SHOWN_KEYS else "")
        what = f"a dict with keys {keys}" if obj else "an empty dict"
        raise CheckpointError(f"{source} holds {what}: neither a state_dict nor a dict with '{WRAPPER_KEY}'")
    if not state_dict:
        raise CheckpointError(f"{source}: the state_dict is empty")
    _check_tensors(state_dict, source)
    stripped, changed = strip_compile_prefix(state_dict, source)
    return LoadedStateDict(
        state_dict=stripped,
        source=source,
        form=form,
        stripped_prefix=COMPILE_PREFIX if changed else None,
        stripped_keys=changed,
        other_keys=other,
    )


def read_state_dict(path: str | Path, *, map_location: Any = "cpu") -> LoadedStateDict:
    """Read the model weights of a checkpoint file in any of the three forms."""
    loaded = unwrap_state_dict(torch_load(path, map_location=map_location), f"checkpoint {path}")
    return attrs.evolve(loaded, path=str(path))


@attrs.frozen
class StateDictMismatch:
    """How a state_dict differs from what a model expects (all empty: it fits)."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    misshaped: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    def describe(self) -> str:
        """``N missing (a, b, c, ...), M unexpected (...), K mis-shaped (key: file [..] vs model [..])``."""

        def listed(keys: list[str]) -> str:
            more = ", ..." if len(keys) > SHOWN_KEYS else ""
            return f" ({', '.join(keys[:SHOWN_KEYS])}{more})" if keys else ""

        shapes = [f"{k}: file {list(got)} vs model {list(want)}" for k, got, want in self.misshaped]
        return (
            f"{len(self.missing)} missing{listed(list(self.missing))}, "
            f"{len(self.unexpected)} unexpected{listed(list(self.unexpected))}, "
            f"{len(self.misshaped)} mis-shaped{listed(shapes)}"
        )


def compare_state_dict(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> StateDictMismatch:
    """Missing, unexpected and mis-shaped keys of ``given`` against ``expected`` (both in order)."""
    missing = tuple(k for k in expected if k not in given)
    unexpected = tuple(k for k in given if k not in expected)
    misshaped = tuple(
        (k, tuple(given[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    )
    return StateDictMismatch(missing, unexpected, misshaped)


def _prefix_hint(mismatch: StateDictMismatch) -> str:
    """When every unexpected key is a missing key under one extra prefix, say so."""
    if not mismatch.missing or len(mismatch.missing) != len(mismatch.unexpected):
        return ""
    first_missing, first_unexpected = mismatch.missing[0], mismatch.unexpected[0]
    if not first_unexpected.endswith("." + first_missing):
        return ""
    prefix = first_unexpected[: -len(first_missing)]
    if all(u == prefix + m for u, m in zip(mismatch.unexpected, mismatch.missing, strict=True)):
        return f" (every checkpoint key has the extra prefix '{prefix}')"
    return ""


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The eager module behind a ``torch.compile`` wrapper (the module itself otherwise)."""
    from torch import nn

    inner = getattr(model, COMPILE_SEGMENT, None)
    return inner if isinstance(inner, nn.Module) else model


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "state_dict") -> None:
    """Load ``state_dict`` into ``model`` (or the module behind its compile wrapper).

    Nothing is loaded unless every key is present with its shape: the checks below are
    the ones ``load_state_dict(strict=True)`` makes, done first so a mismatch cannot leave
    the model half loaded. A mismatch is one CheckpointError listing the first few
    missing, unexpected and mis-shaped keys with their counts.
    """
    target = unwrap_compiled(model)
    _check_tensors(state_dict, source)
    given, _ = strip_compile_prefix(state_dict, source)
    mismatch = compare_state_dict(target.state_dict(), given)
    if mismatch:
        name = getattr(target, "keisei_model_name", None)
        subject = f"{type(target).__name__}" + (f" ('{name}')" if name else "")
        raise CheckpointError(
            f"{source} does not fit {subject}: {mismatch.describe()}{_prefix_hint(mismatch)}; nothing was loaded"
        )
    target.load_state_dict(given, strict=True)


def load_weights(model: nn.Module, path: str | Path) -> LoadedStateDict:
    """Read a checkpoint file in any of the three forms and load it into ``model``."""
    loaded = read_state_dict(path)
    load_into(model, loaded.state_dict, source=loaded.source)
    return loaded
