"""Whether this machine computes a reduced precision natively.

``auto`` asks before it spends minutes validating and timing a candidate that cannot win:
on a CPU without native bfloat16 (no AVX-512 or AMX: e.g. an AVX2-only AMD EPYC Zen 3),
oneDNN emulates bf16 convolutions, and the default ResTower's forward under bf16 autocast
took 33x longer than float32 (batch 32, one thread: 44.0 s against 1.32 s, measured
2026-12-03). Explicit requests (``compile_model(model, "bf16")``) still run; only the
search skips them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# oneDNN's own answer per precision (what decides whether its kernels are native or emulated).
NATIVE_ON_CPU: dict[str, Callable[[], bool]] = {
    "bfloat16": lambda: bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    "float16": lambda: bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()),
}


def native_precision_problem(device: str, precision: str | None) -> str | None:
    """Why ``precision`` would be emulated on ``device`` (None when it is native or not reduced)."""
    if device != "cpu" or precision not in NATIVE_ON_CPU or NATIVE_ON_CPU[precision]():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"this CPU ({capability}) has no native {precision} for oneDNN, which emulates it "
        f"(the default ResTower ran 33x slower in bf16 than in float32 on an AVX2 CPU)"
    )
