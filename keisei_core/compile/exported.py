"""What every inference-only runner of an exported graph needs (ONNX Runtime, OpenVINO...).

Such a strategy exports the eval-mode eager model once (a file cached on disk, with a
JSON sidecar that vouches for its bytes), hands it to another runtime, and routes the
module's ``forward`` through that runtime. The runtime-specific part is the export and
the call; the rest is the same for every runtime and lives here, reached through
:mod:`keisei_core.plugin`:

- :func:`check_exported_cell`: training, device, dtype and weights the runtime takes;
- :func:`exported_observation_shape` and :func:`export_example`: what the export traces with;
- :func:`weights_fingerprint`: a cheap identity of the weights, so a runner notices
  weight changes (``load_state_dict``, an optimiser step) before giving stale answers;
- :func:`check_exported_input`: one clear error for inputs the exported graph cannot take,
  and :func:`check_eval_mode` for a compiled module asked to run in train mode;
- :func:`file_sha256` and :func:`verify_sidecar`: the cache entry is used only when its
  sidecar names the same key and the files still hash to what it recorded.

Errors are raised as the plugin's own classes (given by the caller), so users keep
catching ``OnnxInputError`` or ``OpenVinoStrategyError`` as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from keisei_core.introspect import model_shapes
from keisei_core.specs import StrategyContext

Fingerprint = tuple[tuple[int, int], ...]
EXPORT_BATCH = 2
"""Rows of the example an export traces with: 2, so the batch axis is not specialised to 1."""


def check_exported_cell(
    strategy: str,
    model: nn.Module,
    context: StrategyContext,
    *,
    error: type[Exception],
    inference_error: type[Exception],
    graph: str,
) -> None:
    """Refuse what an exported float32 CPU graph cannot do: training (``inference_error``),
    another device or dtype, or weights not float32 on the CPU (``error``). ``graph`` says
    what is run, for the message (``"an ONNX Runtime session"``)."""
    if context.training:
        raise inference_error(
            f"strategy '{strategy}' is inference-only ({graph}: a frozen eval-mode graph without "
            "autograd); use it for rollouts and evaluation, not training"
        )
    if context.device != "cpu":
        raise error(f"strategy '{strategy}' runs on cpu only, not {context.device}")
    if context.dtype != "float32":
        raise error(f"strategy '{strategy}' takes float32 models only, not {context.dtype}")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and (tensor.dtype != torch.float32 or tensor.device.type != "cpu"):
            raise error(
                f"strategy '{strategy}' needs float32 CPU weights; {name} is {tensor.dtype} on {tensor.device}"
            )


def exported_observation_shape(model: nn.Module, example: torch.Tensor | None, *, error: type[Exception]) -> tuple[int, int, int]:
    """(C, H, W) of the example observations, else what the model declares."""
    if example is not None:
        if example.dim() != 4:
            raise error(f"example observations must be 4-D (B, C, H, W), got shape {tuple(example.shape)}")
        c, h, w = (int(s) for s in example.shape[1:])
        return c, h, w
    return model_shapes(model).observation


def export_example(
    example: torch.Tensor | None, observation: tuple[int, int, int], *, error: type[Exception]
) -> torch.Tensor:
    """A batch-:data:`EXPORT_BATCH` float32 CPU example: the context's observations, or
    synthetic positions."""
    if example is None:
        from keisei_core.observations import make_observations

        channels, board, width = observation
        if board != width:
            raise error(f"cannot synthesise observations for a {board}x{width} board")
        return make_observations(EXPORT_BATCH, channels, board)
    example = example.detach().to(device="cpu", dtype=torch.float32)
    if example.shape[0] >= EXPORT_BATCH:
        return example[:EXPORT_BATCH].contiguous()
    return example[:1].repeat(EXPORT_BATCH, 1, 1, 1)


def weights_fingerprint(model: nn.Module) -> Fingerprint:
    """Cheap identity of the current weights: (storage pointer, in-place version) per tensor.

    Runs on every call of an exported-graph runner, so it walks the modules' own
    parameter and buffer tables instead of ``parameters()``/``buffers()``, whose
    de-duplicating generators cost 4x as much (194 against 49 us for the default
    ResTower's 187 tensors, Intel Xeon, measured; a batch-1 int8 call is about 2 ms).
    A tensor shared by two modules appears twice; the tuple is only compared with itself.
    """
    found: list[tuple[int, int]] = []
    pending: list[nn.Module | None] = [model]
    while pending:
        module = pending.pop()
        if module is None:
            continue
        for table in (module._parameters, module._buffers):
            for tensor in table.values():
                if tensor is not None:
                    found.append((tensor.data_ptr(), tensor._version))
        pending.extend(module._modules.values())
    return tuple(found)


def check_exported_input(
    obs: Any, observation: tuple[int, int, int], *, runtime: str, error: type[Exception]
) -> None:
    """Float32 CPU observations of shape (B >= 1, C, H, W), else ``error`` naming ``runtime``."""
    if not isinstance(obs, torch.Tensor):
        raise error(f"observations must be a torch.Tensor, got {type(obs).__name__}")
    if obs.device.type != "cpu" or obs.dtype != torch.float32:
        raise error(f"the {runtime} takes float32 CPU observations, got {obs.dtype} on {obs.device}")
    if obs.dim() != 4 or tuple(obs.shape[1:]) != observation or obs.shape[0] < 1:
        raise error(
            f"observations must have shape (B >= 1, {', '.join(map(str, observation))}), got {tuple(obs.shape)}"
        )


def check_eval_mode(module: nn.Module, strategy: str, *, error: type[Exception]) -> None:
    """A compiled module in train mode is refused: the exported graph is eval-mode only."""
    if module.training:
        raise error(
            f"{type(module).__name__} compiled with '{strategy}' is inference-only: it runs a frozen "
            "eval-mode graph, so train mode (dropout, batch statistics, gradients) cannot be "
            "honoured; call .eval(), or train the eager model"
        )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (exports are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sidecar(
    meta_path: Path, key: str, files: Mapping[str, Path], *, what: str
) -> tuple[dict[str, Any] | None, str]:
    """The sidecar's data when it names ``key`` and each ``files[field]`` still hashes to
    the SHA-256 recorded under ``field``; else (None, why) for the cache-miss note.
    ``what`` names the artifact in the reasons (``"export"``, ``"IR"``)."""
    try:
        meta = json.loads(meta_path.read_text())
        recorded = {field: str(meta[field]) for field in files}
        recorded_key = str(meta["key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"cache sidecar {meta_path.name} unreadable ({type(exc).__name__})"
    if recorded_key != key:
        return None, "cache sidecar belongs to another key"
    first = next(iter(files.values()))
    try:
        if any(file_sha256(path) != recorded[field] for field, path in files.items()):
            return None, f"cached {what} {first.name} does not match its recorded SHA-256"
    except OSError as exc:
        return None, f"cached {what} unreadable ({exc.strerror or type(exc).__name__})"
    return meta, "ok"
