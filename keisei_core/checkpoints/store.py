"""``save_checkpoint`` / ``load_checkpoint``: checkpoints that rebuild their own model.

The original Keisei checkpoint held weights and counters but not the architecture or the
compile settings (defect 7), so nothing could rebuild the network from it. A keisei
checkpoint is a ``torch.save`` dict of tensors and plain containers only (so it loads
with ``weights_only=True``)::

    {"keisei_checkpoint": 1,
     "model": {"name": "restower", "options": {...}},       # the registry recipe
     "model_state_dict": {...},                              # eager keys, no _orig_mod.
     "optimizer_state_dict": {...},                          # optional
     "strategy": "inductor" | None, "compile_report": {...} | None,
     "versions": {"keisei_core", "torch", "python", "model_plugin", "model_plugin_version"},
     "metadata": {...}, "created": "2025-...Z",
     "checksums": {"algorithm": "sha256", "tensors": {key: hex}}}   # per-tensor, see checksums

Because the weights sit under ``model_state_dict``, :func:`keisei_core.checkpoints.read_state_dict`
(and ``keisei info --weights``) read these files like any Keisei training checkpoint.
Writes are atomic (temporary file in the same folder, fsync, rename). Loading builds a
fresh model from the recipe and loads the weights all or nothing: a truncated, corrupt or
mismatched file is one :class:`~keisei_core.errors.CheckpointError`, never a partial model.

Before anything is built, loading checks the zip CRC-32 of every member and, after
unpickling, each tensor's SHA-256; ``LoadedCheckpoint.integrity`` says which checks ran.
The recipe is built on the meta device first (no memory), so a recipe whose model does not
fit the saved weights (``conv_channels = 10**12``) or whose parameters would not fit in
memory is one ``CheckpointError`` line before any allocation.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.atomic_files import atomic_open
from keisei_core.checkpoints.checksums import CHECKSUMS_KEY, checksums_of, verify_checksums
from keisei_core.checkpoints.state_dicts import (
    WRAPPER_KEY,
    compare_state_dict,
    load_into,
    torch_load_checked,
    unwrap_compiled,
    unwrap_state_dict,
)
from keisei_core.errors import CheckpointError, UnknownNameError
from keisei_core.oneline import one_line

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.plugins import PluginHost

FORMAT_KEY = "keisei_checkpoint"
FORMAT_VERSION = 1

__all__ = ["FORMAT_VERSION", "LoadedCheckpoint", "load_checkpoint", "save_checkpoint"]


@attrs.frozen
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, with everything saved beside its weights.

    The strategy is recorded, not re-applied: compile ``model`` again with
    ``keisei_core.compile.compile_model(model, checkpoint.strategy)`` when wanted.
    """

    model: nn.Module
    model_name: str
    model_options: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    strategy: str | None
    compile_report: dict[str, Any] | None
    versions: dict[str, Any]
    metadata: dict[str, Any]
    path: str
    # Which integrity checks ran, and what loading cast (``allow_cast=True`` only).
    integrity: tuple[str, ...] = ()
    cast: tuple[str, ...] = ()

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Restore the saved optimizer state into ``optimizer`` (built over ``model``'s parameters)."""
        if self.optimizer_state is None:
            raise CheckpointError(f"checkpoint {self.path} holds no optimizer state")
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"checkpoint {self.path}: optimizer state does not fit this optimizer ({one_line(exc, with_type=False)})"
            ) from None


def _plain(value: Any, where: str) -> Any:
    """Check that ``value`` is made of what weights-only loading accepts (JSON-like data)."""
    # Exact builtin types: subclasses such as torch's TorchVersion (a str) would be
    # pickled as their own class, which weights-only loading refuses.
    if value is None:
        return None
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"cannot save {where}: {type(value).__name__} is not plain data (use str, numbers, lists, dicts)")


def _model_recipe(model: nn.Module) -> tuple[str, dict[str, Any]]:
    eager = unwrap_compiled(model)
    name = getattr(model, "keisei_model_name", None) or getattr(eager, "keisei_model_name", None)
    options = getattr(model, "keisei_model_options", None) or getattr(eager, "keisei_model_options", None)
    if not name:
        raise CheckpointError(
            f"cannot save a {type(eager).__name__} that was not built by the registry: it has no "
            "keisei_model_name (build it with keisei_core.build_model so the checkpoint can rebuild it)"
        )
    return str(name), dict(options or {})


def _versions(model_name: str, host: PluginHost | None) -> dict[str, Any]:
    import torch

    from keisei_core import __version__

    versions: dict[str, Any] = {
        "keisei_core": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model_plugin": None,
        "model_plugin_version": None,
    }
    try:
        from keisei_core.plugins import get_host

        active = host or get_host()
        registration = active.models.registration(model_name)
        record = active.record(registration.plugin)
        versions["model_plugin"] = registration.distribution or registration.plugin
        versions["model_plugin_version"] = (record.version if record is not None else None) or (
            __version__ if record is not None and record.source == "builtin" else None
        )
    except UnknownNameError:
        pass
    return versions


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    strategy: str | None = None,
    compile_report: Any = None,
    metadata: Mapping[str, Any] | None = None,
    host: PluginHost | None = None,
) -> Path:
    """Write ``model`` (eager or compiled) with its recipe, atomically; returns the path.

    ``compile_report`` may be a :class:`~keisei_core.compile.CompileReport` or a dict; it is
    stored as plain data (the project's converter, strict JSON).
    The weights are stored with eager key names whatever wrapper the model has, so
    compiled and eager runs load each other's checkpoints (Keisei defect 3).
    """
    import torch

    from keisei_core.json_data import json_safe
    from keisei_core.serialization import unstructure

    name, options = _model_recipe(model)
    state_dict = {k: v.detach().cpu() for k, v in unwrap_compiled(model).state_dict().items()}
    unwrapped = unwrap_state_dict({WRAPPER_KEY: state_dict}, "model")  # strips any inner _orig_mod.
    payload: dict[str, Any] = {
        FORMAT_KEY: FORMAT_VERSION,
        "model": {"name": name, "options": _plain(options, "model options")},
        WRAPPER_KEY: unwrapped.state_dict,
        "strategy": strategy,
        "compile_report": _plain(json_safe(unstructure(compile_report)), "compile_report"),
        "versions": _plain(_versions(name, host), "versions"),
        "metadata": _plain(dict(metadata or {}), "metadata"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        CHECKSUMS_KEY: checksums_of(unwrapped.state_dict),
    }
    if optimizer is not None:
        payload["optimizer_state_dict"] = optimizer.state_dict()
    target = Path(path)
    with atomic_open(target, "wb") as handle:
        torch.save(payload, handle)
    return target


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise CheckpointError(f"{where}: entry '{key}' is missing or malformed")
    return value


def _build_checked(spec: Any, options: Any, state_dict: Mapping[str, Any], where: str) -> nn.Module:
    """Build the recipe's model, after building it on the meta device (no memory) to check
    that it fits the saved weights and that its tensors fit in this machine's memory."""
    import torch

    from keisei_core.model_size import format_bytes, memory_limit_bytes
    from keisei_core.models import build_from_spec

    try:
        with torch.device("meta"):
            shadow = build_from_spec(spec, options)
    except Exception:  # a builder that needs real tensors: the real build below decides
        shadow = None
    if shadow is not None:
        expected = shadow.state_dict()
        needed = sum(t.numel() * t.element_size() for t in expected.values())
        limit = memory_limit_bytes()
        mismatch = compare_state_dict(expected, state_dict)
        if mismatch:
            raise CheckpointError(
                f"{where} does not fit the model its recipe builds ('{spec.name}'): {mismatch.describe()}; "
                "nothing was loaded (checked on the meta device: no memory was allocated)"
            )
        if needed > limit:
            raise CheckpointError(
                f"{where}: the saved recipe asks for a model of {format_bytes(needed)}, more than this "
                f"machine's {format_bytes(limit)} of memory; nothing was loaded (checked on the meta device)"
            )
    try:
        return build_from_spec(spec, options)
    except (RuntimeError, MemoryError) as exc:
        raise CheckpointError(f"{where}: building the saved recipe failed ({one_line(exc, limit=200, with_type=False)})") from None


def load_checkpoint(
    path: str | Path,
    *,
    map_location: Any = "cpu",
    host: PluginHost | None = None,
    allow_cast: bool = False,
) -> LoadedCheckpoint:
    """Rebuild the saved model through the registry and load its weights (all or nothing).

    The file's zip CRC-32s and per-tensor SHA-256 checksums are verified first; weights of
    another dtype than the model's are refused unless ``allow_cast`` (then reported in
    ``cast``), and NaN or infinite weights are refused."""
    from keisei_core.models import resolve_options
    from keisei_core.plugins import get_host

    where = f"checkpoint {path}"
    obj, zip_check = torch_load_checked(path, map_location=map_location)
    if not isinstance(obj, Mapping) or FORMAT_KEY not in obj:
        raise CheckpointError(
            f"{where} is not a keisei checkpoint (no model recipe); build the model yourself and "
            "load its weights with keisei_core.checkpoints.load_weights(model, path)"
        )
    version = obj[FORMAT_KEY]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where} has checkpoint format {version!r}; this keisei reads format {FORMAT_VERSION}")
    recipe = _field(obj, "model", Mapping, where)
    name = _field(recipe, "name", str, where)
    options = _field(recipe, "options", Mapping, where)
    loaded = unwrap_state_dict({WRAPPER_KEY: obj.get(WRAPPER_KEY)}, where)
    if CHECKSUMS_KEY in obj:
        integrity = (zip_check, verify_checksums(obj[WRAPPER_KEY], obj[CHECKSUMS_KEY], where))
    else:
        integrity = (zip_check, "no per-tensor checksums (written by an older keisei)")
    active = host or get_host()
    try:
        spec = active.models.get(name)
    except UnknownNameError as exc:
        plugin = (obj.get("versions") or {}).get("model_plugin")
        hint = f"; it was saved with plugin '{plugin}' -- install it" if plugin else ""
        raise CheckpointError(f"{where}: {exc}{hint}") from None
    model = _build_checked(spec, resolve_options(spec, options, where=f"{where}: model options"), loaded.state_dict, where)
    casts = load_into(model, loaded.state_dict, source=where, allow_cast=allow_cast)
    if map_location is not None and not callable(map_location) and not isinstance(map_location, Mapping):
        model = model.to(map_location)
    optimizer_state = _field(obj, "optimizer_state_dict", Mapping, where, optional=True)
    return LoadedCheckpoint(
        model=model,
        model_name=name,
        model_options=dict(getattr(model, "keisei_model_options", options)),
        optimizer_state=dict(optimizer_state) if optimizer_state is not None else None,
        strategy=_field(obj, "strategy", str, where, optional=True),
        compile_report=_field(obj, "compile_report", Mapping, where, optional=True),
        versions=dict(_field(obj, "versions", Mapping, where, optional=True) or {}),
        metadata=dict(_field(obj, "metadata", Mapping, where, optional=True) or {}),
        path=str(path),
        integrity=integrity,
        cast=casts,
    )
