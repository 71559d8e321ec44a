"""Keys and files for compiled artifacts kept on disk between runs (warm starts).

An artifact (an AOTInductor package, an ONNX file) is valid for one model
architecture and options, one set of weights, one torch version, one device and dtype,
and one composition of strategies before it (``channels-last+bf16+aot-inductor`` is not
``aot-inductor``). :func:`artifact_key` hashes all of them, so a changed weight or an
upgraded torch never picks up a stale artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from keisei_core.atomic_files import atomic_path
from keisei_core.compile.wrapping import ForwardWrapper, forward_wrappers, wrapper_name
from keisei_core.specs import StrategyContext


def weights_hash(module: nn.Module) -> str:
    """SHA-256 over every state_dict entry's name, dtype, shape and bytes (layout-independent)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def artifact_key(
    module: nn.Module,
    context: StrategyContext,
    strategy: str,
    *,
    wrappers: Sequence[ForwardWrapper] | None = None,
    **extra: Any,
) -> str:
    """A short hex key naming the artifact ``strategy`` builds for ``module`` in ``context``.

    ``wrappers``: the forward wrappers the artifact contains (default: all on the module;
    a strategy that wraps forward itself passes those before its own).
    """
    if wrappers is None:
        wrappers = forward_wrappers(module)
    recipe = {
        "strategy": strategy,
        "model": getattr(module, "keisei_model_name", None) or context.model_name,
        "options": getattr(module, "keisei_model_options", None) or dict(context.model_options or {}),
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "weights": weights_hash(module),
        "torch": torch.__version__,
        "device": context.device,
        "dtype": context.dtype,
        "composition": list(context.composition),
        "wrappers": [wrapper_name(w) for w in wrappers],
        "extra": extra,
    }
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def artifact_path(context: StrategyContext, strategy: str, key: str, suffix: str) -> Path:
    """``<cache_dir>/<strategy>/<key><suffix>`` (the folder is created)."""
    folder = Path(context.cache_dir) / strategy
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}{suffix}"


def build_atomically(path: Path, build: Callable[[Path], Any]) -> None:
    """Run ``build(temporary_path)`` and rename the result to ``path``: a crash or a parallel
    run never leaves a half-written artifact under the final name."""
    with atomic_path(path, suffix=path.suffix) as temporary:
        build(temporary)

