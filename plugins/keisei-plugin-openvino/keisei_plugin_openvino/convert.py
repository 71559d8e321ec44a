"""torch.export -> OpenVINO conversion, and the on-disk cache of converted models (IR).

Converter choice (torch 2.13, openvino 2026.4): ``openvino.convert_model`` on a
``torch.export.ExportedProgram`` (OpenVINO's FX frontend). The export declares the batch
axis with ``torch.export.Dim.DYNAMIC``, so an operation that bakes the example's batch
size into the graph fails the export instead of producing a graph that is wrong at other
sizes -- the same reason ``aot-inductor`` and ``onnxruntime`` export this way.
``convert_model(nn.Module)`` would trace with TorchScript, which silently freezes
data-dependent control flow into one branch; it is not used.

The converted model keeps float32 weights: ``save_model(..., compress_to_fp16=False)``
(the default, True, would round every weight to float16 on disk). Precision is chosen at
compile time by the ``INFERENCE_PRECISION_HINT`` (see :mod:`.runtime`), so one IR serves
any hint; the key still names the strategy, as every keisei artifact does.

Cache: ``<cache>/<strategy>/<key>.xml`` + ``.bin`` (OpenVINO's IR) + ``.json`` sidecar,
the key from :func:`keisei_core.compile.artifact_key` (model name and options, class,
SHA-256 of the weights, torch version, device, dtype, composition and the transforms
inside the graph) plus the OpenVINO and plugin versions. The IR is written into a
temporary folder beside the cache and renamed into place; the sidecar, written last and
atomically, holds the SHA-256 of both files, so a truncated or altered IR (or one without
its sidecar) is rebuilt, never trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.plugin import (
    ForwardWrapper,
    StrategyContext,
    artifact_key,
    artifact_path,
    file_sha256,
    output_heads,
    verify_sidecar,
    write_json_atomic,
)
from keisei_plugin_openvino import __version__ as plugin_version
from keisei_plugin_openvino.errors import OpenVinoConversionError

CONVERTER = "openvino.convert_model(torch.export.export(..., Dim.DYNAMIC batch))"


def openvino_version() -> str:
    import openvino

    return str(openvino.__version__)


class _Observing(nn.Module):
    """A one-argument view of the model: a wrapped ``forward`` takes ``*args``, which
    torch.export cannot match a named dynamic batch dimension against."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, obs: torch.Tensor) -> Any:
        return self.model(obs)


def convert(model: nn.Module, example: torch.Tensor, observation: tuple[int, int, int], label: str) -> Any:
    """The eval-mode ``model`` as an ``openvino.Model`` with inputs ``(?, C, H, W)``."""
    import openvino as ov

    try:
        with torch.no_grad():
            program = torch.export.export(
                _Observing(model), (example,), dynamic_shapes={"obs": {0: torch.export.Dim.DYNAMIC}}
            )
        converted = ov.convert_model(program)
        # The converter leaves every axis it cannot prove static as dynamic; only the
        # batch axis is meant to be.
        converted.reshape([ov.Dimension(), *observation])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise OpenVinoConversionError(
            f"OpenVINO conversion of {label} failed ({CONVERTER}): {type(exc).__name__}: {first[:300]}"
        ) from exc
    # (logits, value) and, for a multi-head model, its extra heads (keisei_core.heads).
    expected = ("logits", "value", *output_heads(model).extra)
    if len(converted.outputs) != len(expected):
        raise OpenVinoConversionError(
            f"OpenVINO conversion of {label} gave {len(converted.outputs)} outputs, expected "
            f"{len(expected)} ({', '.join(expected)})"
        )
    return converted


@attrs.frozen
class IrPaths:
    """The three files of one cache entry."""

    xml: Path
    bin: Path
    meta: Path

    @classmethod
    def for_key(cls, context: StrategyContext, strategy: str, key: str) -> IrPaths:
        """The entry's paths; the folder is created (a cache that cannot be: see ``store``)."""
        try:
            xml = artifact_path(context, strategy, key, ".xml")
        except OSError:  # a file in the way, no permission: nothing cached, nothing written
            xml = Path(context.cache_dir) / strategy / f"{key}.xml"
        return cls(xml, xml.with_suffix(".bin"), xml.with_suffix(".json"))


def ir_key(
    module: nn.Module,
    context: StrategyContext,
    strategy: str,
    wrappers: tuple[ForwardWrapper, ...],
    observation: tuple[int, int, int],
    **extra: Any,
) -> str:
    """The cache key, computed by the core as for AOT packages, plus OpenVINO's versions
    (and ``extra``: what else a strategy's IR depends on, e.g. its quantizer)."""
    return artifact_key(
        module, context, strategy, wrappers=wrappers, batch_dim="dynamic",
        observation=list(observation), openvino=openvino_version(), plugin=plugin_version,
        converter=CONVERTER, **extra,
    )


def load_cached(paths: IrPaths, key: str) -> tuple[Any | None, str]:
    """The cached ``openvino.Model`` if its sidecar vouches for both files, else (None, why)."""
    if not paths.meta.exists():
        return None, "no cached IR"
    meta, why = verify_sidecar(paths.meta, key, {"xml_sha256": paths.xml, "bin_sha256": paths.bin}, what="IR")
    if meta is None:
        return None, why
    import openvino as ov

    try:
        return ov.Core().read_model(str(paths.xml), str(paths.bin)), "ok"
    except Exception as exc:  # bytes that hash right but OpenVINO rejects: rebuild
        return None, f"cached IR rejected by OpenVINO ({type(exc).__name__})"


def store(converted: Any, paths: IrPaths, key: str, *, label: str, seconds: float) -> str | None:
    """Write the IR and its sidecar; returns why not when the cache cannot be written."""
    import openvino as ov

    folder = paths.xml.parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{paths.xml.stem}.", dir=folder))
    except OSError as exc:
        return f"cache not written ({exc.strerror or exc})"
    try:
        xml, weights = staging / "model.xml", staging / "model.bin"
        ov.save_model(converted, str(xml), compress_to_fp16=False)
        meta = {
            "key": key,
            "xml_sha256": file_sha256(xml),
            "bin_sha256": file_sha256(weights),
            "convert_seconds": seconds,
            "converter": CONVERTER,
            "label": label,
            "openvino": openvino_version(),
            "torch": str(torch.__version__),
            "plugin": plugin_version,
        }
        # The sidecar goes last: an IR without a sidecar that vouches for it is never used.
        paths.meta.unlink(missing_ok=True)
        os.replace(weights, paths.bin)
        os.replace(xml, paths.xml)
        write_json_atomic(paths.meta, meta)
    except OSError as exc:
        return f"cache not written ({exc.strerror or exc})"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None


def recorded_convert_seconds(paths: IrPaths) -> float | None:
    try:
        return float(json.loads(paths.meta.read_text())["convert_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def convert_timed(model: nn.Module, example: torch.Tensor, observation: tuple[int, int, int], label: str) -> tuple[Any, float]:
    start = time.perf_counter()
    converted = convert(model, example, observation, label)
    return converted, time.perf_counter() - start
