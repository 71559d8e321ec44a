"""Exporting an eval-mode actor-critic network to ONNX, and the on-disk cache of exports.

Exporter choice (torch 2.13, onnxscript 0.7.2): ``torch.onnx.export(..., dynamo=True)`` is
the default since torch 2.9 and the only maintained path. It goes through
``torch.export`` (non-strict), so a batch axis declared with ``torch.export.Dim`` is
checked symbolically: an operation that would bake the example's batch size into the
graph fails the export instead of producing a graph that is wrong at other sizes. The
legacy TorchScript tracer (``dynamo=False``) is faster to run but deprecated, and it
traces data-dependent Python control flow silently into one branch, so it is not used,
not even as a fallback.

Cache: one ``<label>-<digest>.onnx`` file plus a ``.json`` sidecar per export key (model
name and options, observation shape, a hash of every state_dict tensor, the torch, onnx,
onnxscript and plugin versions). Both are written atomically (temporary file, then
``os.replace``); the sidecar, written second, holds the SHA-256 of the ``.onnx`` bytes,
so a truncated or altered file (or one without its sidecar) is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.plugin import verify_sidecar, write_bytes_atomic
from keisei_plugin_onnxruntime import __version__ as plugin_version
from keisei_plugin_onnxruntime.errors import OnnxExportError

EXPORTER = "torch.onnx.export(dynamo=True)"
INPUT_NAME = "obs"
OUTPUT_NAMES = ("logits", "value")
CACHE_SUBDIR = "onnxruntime"


def output_names(model: nn.Module) -> list[str]:
    """``logits``, ``value`` and a multi-head model's extra heads (``value_wdl``, ``score``)."""
    from keisei_core.plugin import output_heads

    return [*OUTPUT_NAMES, *output_heads(model).extra]


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every state_dict entry's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(data.view(torch.uint8).numpy()))
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxscript

    return {
        "torch": str(torch.__version__),
        "onnx": str(onnx.__version__),
        "onnxscript": str(onnxscript.__version__),
        "plugin": plugin_version,
    }


@attrs.frozen
class ExportKey:
    """Everything the exported file depends on; its digest names the cache entry."""

    label: str
    options: Mapping[str, Any]
    observation: tuple[int, int, int]
    weights: str
    versions: Mapping[str, str] = attrs.field(factory=_versions)
    # The composition and the forward wrappers the export traces through: without them
    # ``bf16+onnxruntime`` would reuse the float32 export of the same weights.
    recipe: tuple[str, ...] = ()

    def digest(self) -> str:
        payload = {
            "exporter": EXPORTER,
            "label": self.label,
            "options": dict(self.options),
            "observation": list(self.observation),
            "weights": self.weights,
            "versions": dict(self.versions),
            "recipe": list(self.recipe),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def paths(self, cache_dir: Path) -> tuple[Path, Path]:
        # The label keeps the directory readable; the digest alone decides identity.
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", self.label)[:60] or "model"
        stem = f"{safe}-{self.digest()[:32]}"
        folder = Path(cache_dir) / CACHE_SUBDIR
        return folder / f"{stem}.onnx", folder / f"{stem}.json"


@attrs.frozen
class Exported:
    """An ONNX model on disk (or only in memory when the cache could not be written)."""

    path: Path | None
    data: bytes | None
    export_seconds: float
    opset: int | None


class _DropTorchvisionNotice(logging.Filter):
    # The exporter's op registry warns once per torchvision op when torchvision is absent;
    # keisei models use none of them, so the notices are noise in CLI and test output.
    def filter(self, record: logging.LogRecord) -> bool:
        return "torchvision is not installed" not in record.getMessage()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    notice_filter = _DropTorchvisionNotice()
    logger.addFilter(notice_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.removeFilter(notice_filter)


def export_to_onnx(model: nn.Module, example_obs: torch.Tensor, label: str) -> tuple[bytes, int | None]:
    """Serialised ONNX model of ``model`` (eval mode) with a dynamic batch axis, and its opset."""
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                model,
                (example_obs,),
                input_names=[INPUT_NAME],
                output_names=output_names(model),
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,
                optimize=True,
                verbose=False,
            )
            if program is None:  # only the TorchScript path returns None
                raise RuntimeError("torch.onnx.export returned no ONNXProgram")
            proto = program.model_proto
            data = proto.SerializeToString()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise OnnxExportError(
            f"ONNX export of {label} failed ({EXPORTER}): {type(exc).__name__}: {first}"
        ) from exc
    opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return data, opset


def load_cached(key: ExportKey, cache_dir: Path) -> tuple[Exported | None, str]:
    """The cached export for ``key`` if its sidecar vouches for its bytes, else (None, why)."""
    onnx_path, meta_path = key.paths(cache_dir)
    if not onnx_path.exists():
        return None, "no cached export"
    meta, why = verify_sidecar(meta_path, key.digest(), {"sha256": onnx_path}, what="export")
    if meta is None:
        return None, why
    try:
        seconds = float(meta["export_seconds"])
        opset = meta.get("opset")
        return Exported(onnx_path, None, seconds, int(opset) if opset is not None else None), "ok"
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"cache sidecar {meta_path.name} unreadable ({type(exc).__name__})"


def export_and_store(
    model: nn.Module, example_obs: torch.Tensor, key: ExportKey, cache_dir: Path
) -> tuple[Exported, str | None]:
    """Export now and store it under ``key``; returns the export and, if storing failed, why."""
    start = time.perf_counter()
    data, opset = export_to_onnx(model, example_obs, key.label)
    seconds = time.perf_counter() - start
    onnx_path, meta_path = key.paths(cache_dir)
    meta = {
        "key": key.digest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "export_seconds": seconds,
        "opset": opset,
        "exporter": EXPORTER,
        "label": key.label,
        "observation": list(key.observation),
        "versions": dict(key.versions),
    }
    try:
        # The sidecar goes second: an .onnx file without a matching sidecar is never used.
        write_bytes_atomic(onnx_path, data)
        write_bytes_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    except OSError as exc:
        # A read-only or full cache costs the warm start, not the compile.
        return Exported(None, data, seconds, opset), f"cache not written ({exc.strerror or exc})"
    return Exported(onnx_path, data, seconds, opset), None
