"""Reading model weights from checkpoint files and loading them into models, all or nothing.

Keisei checkpoints come in three forms, and every one of them loads:

- a bare state_dict (``torch.save(model.state_dict(), path)``);
- a dict holding it under ``model_state_dict`` (Keisei's training checkpoints; the other
  entries -- optimizer state, counters -- are reported, not used);
- either of those saved from a ``torch.compile``'d model, whose keys carry the
  ``_orig_mod.`` segment (Keisei defect 3); the segment is removed wherever it appears, so
  a state_dict of a compiled submodule loads too.

Files are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
A file whose pickle refers to anything weights-only loading does not allow (``os.system``,
``builtins.eval``, a class of some module) is refused with a line naming that global
(``tries to run code when loaded: its pickle calls posix.system``), for every pickle
protocol and for the legacy (non-zip) format; torch's own warnings about the protocol
are not passed on.

Integrity: a zip-format file has a CRC-32 per member; every member is checked before
unpickling (members whose writer recorded no CRC are skipped and said so). The legacy
format carries no checksum. Which check ran is in ``LoadedStateDict.integrity``;
keisei checkpoints add a SHA-256 per tensor (see :mod:`keisei_core.checkpoints.store`).

Loading into a model refuses, by default, weights whose dtype differs from the model's
(``int8`` into ``float32``: a cast would silently change them) and floating-point weights
holding NaN or infinity (unless the model's own tensor holds them at the same key, as a
mask buffer may); ``allow_cast=True`` casts instead and the casts are reported.

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
# How much of a pickle the refusal scanner reads at most (a state_dict pickle is small;
# the tensors' bytes live outside it).
PICKLE_SCAN_LIMIT = 64 * 1024 * 1024


@attrs.frozen
class LoadedStateDict:
    """A state_dict read from a checkpoint, and how it was found there.

    ``form`` is ``"state_dict"`` (bare) or ``"model_state_dict"`` (wrapped);
    ``stripped_prefix`` is ``"_orig_mod."`` when that segment was removed from
    ``stripped_keys`` keys (the checkpoint came from a compiled model), else ``None``;
    ``other_keys`` are the wrapper's other top-level entries (optimizer state, counters);
    ``architecture`` the wrapper's architecture tag (Keisei 2026) and ``counters`` its
    integer counters (epoch, step, ...); ``adapted`` what an explicit adaptation changed
    (see :mod:`keisei_core.checkpoints.adapt`).
    """

    state_dict: dict[str, torch.Tensor]
    source: str
    form: str
    path: str | None = None
    stripped_prefix: str | None = None
    stripped_keys: int = 0
    other_keys: tuple[str, ...] = ()
    # Which integrity checks ran (e.g. "zip CRC-32 of 7 members"), and what loading cast.
    integrity: tuple[str, ...] = ()
    cast: tuple[str, ...] = ()
    architecture: str | None = None
    counters: dict[str, int] = attrs.field(factory=dict)
    adapted: tuple[str, ...] = ()

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
            "integrity": list(self.integrity),
            "cast": list(self.cast),
            "architecture": self.architecture,
            "counters": dict(self.counters),
            "adapted": list(self.adapted),
        }


def _one_line(text: str, limit: int = 200) -> str:
    from keisei_core.oneline import flatten

    return flatten(text, limit=limit)


def _allowed_globals() -> set[str] | None:
    """``module.name`` of every global torch's weights-only unpickler accepts."""
    import torch

    try:  # private: if a torch release moves it, the scan names nothing and torch's message is used
        from torch import _weights_only_unpickler

        allowed = set(_weights_only_unpickler._get_allowed_globals())
    except (ImportError, AttributeError):
        return None
    for entry in torch.serialization.get_safe_globals():
        obj = entry[0] if isinstance(entry, tuple) else entry
        name = entry[1] if isinstance(entry, tuple) else f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        allowed.add(str(name))
    return allowed


_STRING_OPS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
)


def _globals_in_pickle(stream: Any) -> list[str]:
    """``module.name`` of each global one pickle refers to (GLOBAL, INST, STACK_GLOBAL), in
    order; reading stops at the pickle's STOP or at the first unreadable opcode.

    STACK_GLOBAL takes module and name from the stack: the strings pushed last (directly
    or fetched back from the memo) are tracked, which is how picklers emit them."""
    import pickletools

    names: list[str] = []
    recent: list[str | None] = []
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            op = opcode.name
            if op in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                names.append(f"{module}.{name}")
            elif op == "STACK_GLOBAL":
                if len(recent) >= 2 and recent[-2] is not None and recent[-1] is not None:
                    names.append(f"{recent[-2]}.{recent[-1]}")
                else:
                    names.append("<unknown global>")
            elif op in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else None)
            elif op == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif op in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = recent[-1] if recent else None
            elif op in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                recent.append(memo.get(arg))
            elif op not in ("FRAME", "PROTO", "STOP"):
                recent.append(None)
    except Exception:  # a damaged pickle: report what was read before the damage
        pass
    return names


def refused_global(path: Path) -> str | None:
    """The first global in the checkpoint's pickle(s) that weights-only loading refuses."""
    import io
    import zipfile

    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith("data.pkl") and info.file_size <= PICKLE_SCAN_LIMIT:
                        found.extend(_globals_in_pickle(io.BytesIO(archive.read(info))))
        else:
            # Legacy format: pickles one after another (magic number, protocol, system
            # info, the object, storage keys), then raw storage bytes.
            with path.open("rb") as handle:
                stream = io.BytesIO(handle.read(PICKLE_SCAN_LIMIT))
            for _ in range(5):
                start = stream.tell()
                found.extend(_globals_in_pickle(stream))
                if stream.tell() == start:
                    break
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return None
    allowed = _allowed_globals()
    if allowed is None:
        return None
    return next((name for name in found if name not in allowed), None)


def _zip_crc_check(file: Path, where: str) -> str:
    """Check every member's CRC-32 (one CheckpointError naming the first damaged member);
    returns what was checked."""
    import zipfile
    import zlib

    checked = unrecorded = 0
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    unrecorded += 1  # the writer skipped CRCs (torch.serialization.set_crc32_options)
                    continue
                crc = 0
                with archive.open(info) as member:
                    # zipfile itself compares the CRC at the end of the member and raises.
                    while chunk := member.read(1 << 22):
                        crc = zlib.crc32(chunk, crc)
                checked += 1
    except zipfile.BadZipFile as exc:
        raise CheckpointError(
            f"checkpoint {where} is damaged: {_one_line(str(exc))} (zip CRC-32 check); nothing was loaded"
        ) from None
    except (OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(
            f"checkpoint {where} is truncated, corrupt or not a torch.save file ({_one_line(str(exc)) or type(exc).__name__})"
        ) from None
    text = f"zip CRC-32 of {checked} members"
    return text + (f" ({unrecorded} written without a CRC, not checked)" if unrecorded else "")


def _integrity_check(file: Path, where: str) -> str:
    import zipfile

    if zipfile.is_zipfile(file):
        return _zip_crc_check(file, where)
    return "none: the legacy (non-zip) torch.save format carries no checksum"


def torch_load_checked(path: str | Path, *, map_location: Any = "cpu") -> tuple[Any, str]:
    """:func:`torch_load`, after the file's integrity check; returns (object, check that ran)."""
    where = str(path)
    file = Path(path)
    if not file.exists():
        raise CheckpointError(f"checkpoint file {where} does not exist")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {where} is not a file")
    integrity = _integrity_check(file, where)
    return torch_load(file, map_location=map_location, label=where), integrity


def torch_load(path: str | Path, *, map_location: Any = "cpu", label: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as one CheckpointError line."""
    import pickle
    import warnings

    import torch

    where = label or str(path)
    file = Path(path)
    if not file.exists():
        raise CheckpointError(f"checkpoint file {where} does not exist")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {where} is not a file")
    try:
        with warnings.catch_warnings():
            # "Detected pickle protocol N ...": torch's note to itself, not the user's problem.
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
            return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        name = refused_global(file)
        if name is None:
            match = _UNSUPPORTED_GLOBAL.search(str(exc))
            name = match.group(1) if match else None
        if name is not None:
            raise CheckpointError(
                f"checkpoint {where} tries to run code when loaded: its pickle calls {name}, which "
                "weights-only loading refuses; nothing was executed (only tensors and plain containers "
                f"load; if you trust the file, re-save its weights alone, e.g. torch.save(checkpoint['{WRAPPER_KEY}'], path))"
            ) from None
        raise CheckpointError(
            f"checkpoint {where} is corrupt or not a torch.save file ({_one_line(str(exc).split('. ')[0]) or 'unpickling failed'})"
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
    from keisei_core.checkpoints.training_state import architecture_tag, counters

    return LoadedStateDict(
        state_dict=stripped,
        source=source,
        form=form,
        stripped_prefix=COMPILE_PREFIX if changed else None,
        stripped_keys=changed,
        other_keys=other,
        architecture=architecture_tag(obj) if form == FORM_WRAPPED else None,
        counters=counters(obj) if form == FORM_WRAPPED else {},
    )


def read_state_dict(path: str | Path, *, map_location: Any = "cpu") -> LoadedStateDict:
    """Read the model weights of a checkpoint file in any of the three forms (after the
    file's integrity check; a keisei checkpoint's per-tensor checksums are verified too)."""
    obj, integrity = torch_load_checked(path, map_location=map_location)
    where = f"checkpoint {path}"
    loaded = unwrap_state_dict(obj, where)
    checks = [integrity]
    from keisei_core.checkpoints.checksums import CHECKSUMS_KEY, verify_checksums

    if isinstance(obj, Mapping) and CHECKSUMS_KEY in obj:
        checks.append(verify_checksums(obj[WRAPPER_KEY], obj[CHECKSUMS_KEY], where))
    return attrs.evolve(loaded, path=str(path), integrity=tuple(checks))


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


def _check_values(
    target: nn.Module, given: Mapping[str, torch.Tensor], source: str, allow_cast: bool
) -> tuple[str, ...]:
    """Refuse dtype changes (unless ``allow_cast``) and non-finite floating weights; returns
    the casts that loading will make, as ``key: int8 -> float32`` (first few, then a count)."""
    import torch

    expected = target.state_dict()
    casts: list[str] = []
    non_finite: list[str] = []
    for key, value in given.items():
        want = expected[key]
        if value.dtype != want.dtype:
            casts.append(f"{key}: {str(value.dtype).removeprefix('torch.')} -> {str(want.dtype).removeprefix('torch.')}")
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            own = want.is_floating_point() and not bool(torch.isfinite(want).all()) if want.numel() else False
            if not own:
                non_finite.append(key)
    if non_finite:
        more = f" and {len(non_finite) - SHOWN_KEYS} more" if len(non_finite) > SHOWN_KEYS else ""
        raise CheckpointError(
            f"{source} holds NaN or infinite weights in {', '.join(non_finite[:SHOWN_KEYS])}{more}; "
            "refused, nothing was loaded"
        )
    if casts and not allow_cast:
        more = f" and {len(casts) - SHOWN_KEYS} more" if len(casts) > SHOWN_KEYS else ""
        raise CheckpointError(
            f"{source} has weights of another dtype than the model ({'; '.join(casts[:SHOWN_KEYS])}{more}); "
            "loading would cast them: refused, nothing was loaded (pass allow_cast=True to cast)"
        )
    return tuple(casts)


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "state_dict",
    allow_cast: bool = False,
    adapt_input_channels: bool = False,
    adaptations: list[str] | None = None,
) -> tuple[str, ...]:
    """Load ``state_dict`` into ``model`` (or the module behind its compile wrapper).

    Nothing is loaded unless every key is present with its shape, every floating-point
    weight is finite, and every dtype is the model's (or ``allow_cast``): the checks
    below are the ones ``load_state_dict(strict=True)`` makes and more, done first so a
    mismatch cannot leave the model half loaded. A mismatch is one CheckpointError
    listing the first few missing, unexpected and mis-shaped keys with their counts.
    Returns the casts made (``key: int8 -> float32``), empty when none.
    ``adapt_input_channels`` allows one mismatch, the stem's input channels (padded or
    truncated, Keisei 2025's ``load_checkpoint_with_padding``); what was adapted is
    appended to ``adaptations``.
    """
    target = unwrap_compiled(model)
    _check_tensors(state_dict, source)
    given, _ = strip_compile_prefix(state_dict, source)
    mismatch = compare_state_dict(target.state_dict(), given)
    adapted: tuple[str, ...] = ()
    if mismatch and adapt_input_channels:
        from keisei_core.checkpoints.adapt import adapt_input_channels as adapt
        from keisei_core.spaces import model_spaces

        given, change = adapt(given, mismatch, model_spaces(target).observation.channels, source)
        adapted = (change.describe(),)
        mismatch = compare_state_dict(target.state_dict(), given)
    if mismatch:
        name = getattr(target, "keisei_model_name", None)
        subject = f"{type(target).__name__}" + (f" ('{name}')" if name else "")
        raise CheckpointError(
            f"{source} does not fit {subject}: {mismatch.describe()}{_prefix_hint(mismatch)}; nothing was loaded"
        )
    casts = _check_values(target, given, source, allow_cast)
    target.load_state_dict(given, strict=True)
    if adaptations is not None:
        adaptations.extend(adapted)
    return casts


def load_weights(
    model: nn.Module, path: str | Path, *, allow_cast: bool = False, adapt_input_channels: bool = False
) -> LoadedStateDict:
    """Read a checkpoint file in any of the three forms and load it into ``model``; the
    result says which integrity checks ran, what was cast and what was adapted.

    A checkpoint with an architecture tag (Keisei 2026) must name one the model takes
    (``ModelSpec.checkpoint_architectures``); see :func:`load_into` for ``adapt_input_channels``.
    """
    from keisei_core.checkpoints.architectures import check_architecture

    loaded = read_state_dict(path)
    check_architecture(model, loaded)
    adapted: list[str] = []
    casts = load_into(
        model, loaded.state_dict, source=loaded.source, allow_cast=allow_cast,
        adapt_input_channels=adapt_input_channels, adaptations=adapted,
    )
    return attrs.evolve(loaded, cast=casts, adapted=tuple(adapted))
