"""``int8-aot``: the ``int8`` quantized graph compiled ahead of time into an AOTInductor
package and cached on disk, so a second process loads it instead of calibrating and
compiling again, and every call runs without TorchDynamo's guards.

The flow up to the converted PT2E graph is ``int8``'s (:class:`Int8Program.quantized`:
export with a dynamic batch, ``prepare_pt2e`` with the X86 Inductor quantizer, calibration,
``convert_pt2e``). The converted graph is exported again (dynamic batch) and compiled by
``torch._inductor.aoti_compile_and_package`` with Inductor's freezing on, whose passes
(registered by torchao's X86 quantizer module) turn the quantize/dequantize pairs into
oneDNN ``qconv``/``qlinear`` calls with pre-packed int8 weights held in the package.
One package serves every batch size (no per-bucket recompiles).

Cache key (:func:`keisei_core.compile.artifact_key`: model name, options, class, SHA-256 of
the weights, torch version, device, dtype, composition, the transforms inside the
graph) plus what else decides the package's bytes: a SHA-256 of the calibration
positions, the quantizer's settings (bit widths), the torchao version, the CPU model and
the ISA torch dispatches to (the package holds code compiled for this CPU), the dynamic
batch dimension and the observation shape. Storage and the SHA-256 sidecar:
:mod:`keisei_plugin_inductor.package_cache`.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from keisei_core.plugin import artifact_key
from keisei_plugin_inductor.package_cache import PackageEntry, load_or_build
from keisei_plugin_inductor.quantize import Int8Program

STRATEGY = "int8-aot"
QUANTIZER = "torchao X86InductorQuantizer, static, per-tensor uint8 activations, per-channel int8 weights"


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torchao_version() -> str:
    from importlib.metadata import version

    return version("torchao")


def calibration_digest(positions: torch.Tensor) -> str:
    data = positions.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(f"{tuple(data.shape)}|".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Int8Package(Int8Program):
    """The loaded int8 package a module runs, and how to find or build it for new weights."""

    strategy = STRATEGY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runner: Any = None
        self.path: Path | None = None
        self.verdict: str | None = None  # the cache's answer at the last ensure
        self.reused = False
        self._calibration = calibration_digest(self.positions)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["runner"] = None  # loaded again (from the cache) after unpickling
        return state

    @property
    def ready(self) -> bool:
        return self.runner is not None and not self.stale

    def key(self, module: nn.Module) -> str:
        return artifact_key(
            module, self.context, STRATEGY, wrappers=self.wrappers, batch_dim="dynamic",
            observation=list(self.shape), calibration=self._calibration, quantizer=QUANTIZER,
            activation_bits=self.settings.activation_bits, weight_bits=self.settings.weight_bits,
            torchao=torchao_version(), cpu=cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
            freezing=True,
        )

    def ensure(self, module: nn.Module) -> bool:
        """Load the package for the module's current weights, building it if the cache has
        none it can vouch for. Returns whether a cached package was used."""
        key = self.key(module)
        entry = PackageEntry.for_key(self.context, STRATEGY, key)
        facts = {
            "strategy": STRATEGY, "calibration": f"{self.calibration_source}: {self.positions.shape[0]} positions",
            "calibration_sha256": self._calibration, "torchao": torchao_version(), "cpu": cpu_model(),
        }
        self.runner, self.reused, self.verdict = load_or_build(
            entry, key, functools.partial(self._build, module), facts, label=STRATEGY
        )
        if not self.reused:
            self.builds += 1
        self.path = entry.package
        self.stale = False
        return self.reused

    def _build(self, module: nn.Module, temporary: Path) -> None:
        converted = self.quantized(module)  # a GraphModule without keisei's wrappers
        with torch.no_grad():
            program = torch.export.export(
                converted, (self.example(),), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},)
            )
        # Freezing makes the int8 lowering passes run (see Int8Program.run); AOTInductor
        # reads the same config while it compiles.
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            torch._inductor.aoti_compile_and_package(program, package_path=str(temporary))

    def facts(self) -> dict[str, Any]:
        return {
            "warm_start": self.reused,
            "int8_package": str(self.path),
            "int8_cache": "hit" if self.reused else f"miss ({self.verdict})",
            **super().facts(),
        }

    def run(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # (logits, value) and, for a multi-head model, its extra heads (keisei_core.heads).
        with torch.no_grad():
            return tuple(self.runner(obs))
