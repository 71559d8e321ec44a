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
     "metadata": {...}, "created": "2025-...Z"}

Because the weights sit under ``model_state_dict``, :func:`keisei_core.checkpoints.read_state_dict`
(and ``keisei info --weights``) read these files like any Keisei training checkpoint.
Writes are atomic (temporary file in the same folder, fsync, rename). Loading builds a
fresh model from the recipe and loads the weights all or nothing: a truncated, corrupt or
mismatched file is one :class:`~keisei_core.errors.CheckpointError`, never a partial model.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.atomic_files import atomic_open
from keisei_core.checkpoints.state_dicts import (
    WRAPPER_KEY,
    load_into,
    torch_load,
    unwrap_compiled,
    unwrap_state_dict,
)
from keisei_core.errors import CheckpointError, UnknownNameError

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

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Restore the saved optimizer state into ``optimizer`` (built over ``model``'s parameters)."""
        if self.optimizer_state is None:
            raise CheckpointError(f"checkpoint {self.path} holds no optimizer state")
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"checkpoint {self.path}: optimizer state does not fit this optimizer ({' '.join(str(exc).split())})"
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

    ``compile_report`` may be an attrs report or a dict; it is stored as plain data.
    The weights are stored with eager key names whatever wrapper the model has, so
    compiled and eager runs load each other's checkpoints (Keisei defect 3).
    """
    import torch

    from keisei_core.bench.strategies import report_to_dict

    name, options = _model_recipe(model)
    state_dict = {k: v.detach().cpu() for k, v in unwrap_compiled(model).state_dict().items()}
    unwrapped = unwrap_state_dict({WRAPPER_KEY: state_dict}, "model")  # strips any inner _orig_mod.
    payload: dict[str, Any] = {
        FORMAT_KEY: FORMAT_VERSION,
        "model": {"name": name, "options": _plain(options, "model options")},
        WRAPPER_KEY: unwrapped.state_dict,
        "strategy": strategy,
        "compile_report": _plain(report_to_dict(compile_report), "compile_report"),
        "versions": _plain(_versions(name, host), "versions"),
        "metadata": _plain(dict(metadata or {}), "metadata"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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


def load_checkpoint(
    path: str | Path,
    *,
    map_location: Any = "cpu",
    host: PluginHost | None = None,
) -> LoadedCheckpoint:
    """Rebuild the saved model through the registry and load its weights (all or nothing)."""
    from keisei_core.models import build_from_spec, resolve_options
    from keisei_core.plugins import get_host

    where = f"checkpoint {path}"
    obj = torch_load(path, map_location=map_location)
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
    active = host or get_host()
    try:
        spec = active.models.get(name)
    except UnknownNameError as exc:
        plugin = (obj.get("versions") or {}).get("model_plugin")
        hint = f"; it was saved with plugin '{plugin}' -- install it" if plugin else ""
        raise CheckpointError(f"{where}: {exc}{hint}") from None
    model = build_from_spec(spec, resolve_options(spec, options, where=f"{where}: model options"))
    load_into(model, loaded.state_dict, source=where)
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
    )
