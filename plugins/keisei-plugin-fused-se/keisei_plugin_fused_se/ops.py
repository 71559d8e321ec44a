"""The ``keisei_fused_se`` operators.

User-facing (one op for the whole unit, plus its gradient):

- ``keisei_fused_se::se_unit(Tensor y, Tensor residual, Tensor w1, Tensor b1, Tensor w2,
  Tensor b2, bool film) -> Tensor``: ``relu(y * sigmoid(g) [+ shift] + residual)`` with
  ``[g, shift] = w2 @ relu(w1 @ mean_hw(y) + b1) + b2`` (see :mod:`.reference`).
- ``keisei_fused_se::se_unit_backward(grad, y, out, w1, b1, w2, b2, film)`` -> gradients
  for ``(y, residual, w1, b1, w2, b2)``; the autograd formula of ``se_unit`` calls it.

Both are ``torch.library.triton_op``s: on CUDA tensors they run the Triton kernels through
``wrap_triton`` (so torch.compile and AOTInductor compile the kernels themselves); on CPU
tensors they call the internal ops ``se_unit_cpu`` / ``se_unit_backward_cpu``, whose
kernels come from the C++ library ``keisei_plugin_fused_se._C``. Every op has a fake
implementation, so the unit traces without graph breaks under torch.compile and stays a
single ``keisei_fused_se.se_unit`` node in ``torch.export`` programs.

Importing this module defines the ops and loads the C++ library; if the library was not
built, CPU calls raise :class:`KernelNotBuiltError` naming the command that builds it.
"""

from __future__ import annotations

import importlib

import torch
from torch import Tensor

from keisei_plugin_fused_se.buffer_pool import limit_from_environment
from keisei_plugin_fused_se.errors import KernelNotBuiltError
from keisei_plugin_fused_se.layout import activation_format

NAMESPACE = "keisei_fused_se"
BUILD_COMMAND = "pip install --no-build-isolation -e plugins/keisei-plugin-fused-se (or: make setup)"

try:  # triton is only needed for CUDA tensors; a CPU-only install may lack it
    from keisei_plugin_fused_se.triton_kernels import (
        se_unit_backward_triton,
        se_unit_forward_triton,
    )

    _TRITON_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - triton is installed in the dev venv
    _TRITON_ERROR = f"{type(exc).__name__}: {exc}"

# Read before anything is registered: a bad value then fails the import cleanly, and a
# second import (the next benchmark cell) says the same instead of "already defined".
_POOL_LIMIT_BYTES = limit_from_environment()

_lib = torch.library.Library(NAMESPACE, "FRAGMENT")
_TAGS = (torch.Tag.pt2_compliant_tag,)
_lib.define(
    "se_unit_cpu(Tensor y, Tensor residual, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
    "bool film) -> Tensor",
    tags=_TAGS,
)
_lib.define(
    "se_unit_backward_cpu(Tensor grad, Tensor y, Tensor out, Tensor w1, Tensor b1, "
    "Tensor w2, Tensor b2, bool film) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    tags=_TAGS,
)
# The C++ autograd formula of se_unit_cpu (eager CPU training) saves ReLU's mask as bits
# instead of the output: the forward also returns it, the backward reads it.
_lib.define(
    "se_unit_train_cpu(Tensor y, Tensor residual, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
    "bool film) -> (Tensor, Tensor)",
    tags=_TAGS,
)
_lib.define(
    "se_unit_backward_mask_cpu(Tensor grad, Tensor y, Tensor mask, Tensor w1, Tensor b1, "
    "Tensor w2, Tensor b2, bool film) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    tags=_TAGS,
)


def mask_bytes_per_sample(y: Tensor) -> int:
    """Bytes per sample of ReLU's bit mask (csrc/kernels.h: one bit per element, padded)."""
    elements = y.shape[1] * y.shape[2] * y.shape[3]
    return ((elements + 7) // 8 + 4 + 7) // 8 * 8


def check_arguments(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> None:
    """Shape and dtype rules of the operators (the C++ kernel checks the same)."""
    torch._check(y.dim() == 4, lambda: f"se_unit: y must be (B, C, H, W), got {tuple(y.shape)}")
    torch._check(
        residual.shape == y.shape,
        lambda: f"se_unit: residual shape {tuple(residual.shape)} differs from y {tuple(y.shape)}",
    )
    channels = y.shape[1]
    excite = 2 * channels if film else channels
    torch._check(
        w1.dim() == 2 and w1.shape[1] == channels,
        lambda: f"se_unit: w1 must be (hidden, {channels}), got {tuple(w1.shape)}",
    )
    hidden = w1.shape[0]
    torch._check(b1.shape == (hidden,), lambda: f"se_unit: b1 must be ({hidden},), got {tuple(b1.shape)}")
    torch._check(
        w2.shape == (excite, hidden),
        lambda: f"se_unit: w2 must be ({excite}, {hidden}), got {tuple(w2.shape)}",
    )
    torch._check(b2.shape == (excite,), lambda: f"se_unit: b2 must be ({excite},), got {tuple(b2.shape)}")
    for tensor in (residual, w1, b1, w2, b2):
        torch._check(
            tensor.dtype == y.dtype,
            lambda dtype=tensor.dtype: f"se_unit: all inputs must have dtype {y.dtype}, got {dtype}",
        )


def _empty_activation(y: Tensor) -> Tensor:
    return torch.empty(y.shape, dtype=y.dtype, device=y.device, memory_format=activation_format(y))


def _empty_gradients(
    y: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """What the backward ops return: gradients shaped like (y, residual, w1, b1, w2, b2)."""
    w1g, b1g, w2g, b2g = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (w1, b1, w2, b2))
    return _empty_activation(y), _empty_activation(y), w1g, b1g, w2g, b2g


@torch.library.register_fake(f"{NAMESPACE}::se_unit_cpu")
def _se_unit_cpu_fake(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> Tensor:
    check_arguments(y, residual, w1, b1, w2, b2, film)
    return _empty_activation(y)


@torch.library.register_fake(f"{NAMESPACE}::se_unit_backward_cpu")
def _se_unit_backward_cpu_fake(
    grad: Tensor,
    y: Tensor,
    out: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    film: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    check_arguments(y, out, w1, b1, w2, b2, film)
    return _empty_gradients(y, w1, b1, w2, b2)


@torch.library.register_fake(f"{NAMESPACE}::se_unit_train_cpu")
def _se_unit_train_cpu_fake(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> tuple[Tensor, Tensor]:
    check_arguments(y, residual, w1, b1, w2, b2, film)
    mask = torch.empty((y.shape[0], mask_bytes_per_sample(y)), dtype=torch.uint8, device=y.device)
    return _empty_activation(y), mask


@torch.library.register_fake(f"{NAMESPACE}::se_unit_backward_mask_cpu")
def _se_unit_backward_mask_cpu_fake(
    grad: Tensor,
    y: Tensor,
    mask: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    film: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    check_arguments(y, y, w1, b1, w2, b2, film)
    expected = (y.shape[0], mask_bytes_per_sample(y))
    torch._check(
        mask.dtype == torch.uint8 and tuple(mask.shape) == expected,
        lambda: f"se_unit: mask must be uint8 {expected}, got {mask.dtype} {tuple(mask.shape)}",
    )
    return _empty_gradients(y, w1, b1, w2, b2)


def _load_cpu_library() -> str | None:
    """Import the C++ library (its static initialisers register the CPU kernels)."""
    try:
        importlib.import_module("keisei_plugin_fused_se._C")
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_CPU_ERROR = _load_cpu_library()

if _CPU_ERROR is not None:
    # Without the library the CPU kernels are these, which say how to build it.
    def _not_built(*_args: object, **_kwargs: object) -> Tensor:
        raise KernelNotBuiltError(
            f"the C++ CPU kernel of keisei-plugin-fused-se is not built ({_CPU_ERROR}); "
            f"build it with: {BUILD_COMMAND}"
        )

    _lib.impl("se_unit_cpu", _not_built, "CPU")
    _lib.impl("se_unit_backward_cpu", _not_built, "CPU")
    _lib.impl("se_unit_train_cpu", _not_built, "CPU")
    _lib.impl("se_unit_backward_mask_cpu", _not_built, "CPU")


if _CPU_ERROR is None and _POOL_LIMIT_BYTES is not None:
    torch.ops.keisei_fused_se.cpu_buffer_pool_set_limit(_POOL_LIMIT_BYTES)


def cpu_kernels_available() -> bool:
    return _CPU_ERROR is None


def cpu_kernel_isa() -> str | None:
    """Instruction set of the C++ kernels this process runs (avx512, avx2, default)."""
    if _CPU_ERROR is not None:
        return None
    return str(torch.ops.keisei_fused_se.cpu_kernel_isa())


def require_kernels(device: str) -> None:
    """Raise :class:`KernelNotBuiltError` unless the kernels for ``device`` can run."""
    kind = torch.device(device).type
    if kind == "cpu" and _CPU_ERROR is not None:
        raise KernelNotBuiltError(
            f"the C++ CPU kernel of keisei-plugin-fused-se is not built ({_CPU_ERROR}); "
            f"build it with: {BUILD_COMMAND}"
        )
    if kind == "cuda" and _TRITON_ERROR is not None:
        raise KernelNotBuiltError(
            f"the fused SE op needs triton on CUDA ({_TRITON_ERROR}); install it: pip install triton"
        )
    if kind not in ("cpu", "cuda"):
        raise KernelNotBuiltError(f"the fused SE op runs on cpu and cuda, not {kind}")


def _runs_triton(tensor: Tensor) -> bool:
    """CUDA tensors take the Triton kernels, everything else the C++ kernel. (The tests
    patch this to push CPU tensors through the Triton path under TRITON_INTERPRET=1.)"""
    return tensor.device.type == "cuda"


@torch.library.triton_op(f"{NAMESPACE}::se_unit", mutates_args=())
def se_unit(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> Tensor:
    """The fused SE unit; see the module docstring for the math."""
    if _runs_triton(y):
        if _TRITON_ERROR is not None:
            require_kernels("cuda")
        check_arguments(y, residual, w1, b1, w2, b2, film)
        return se_unit_forward_triton(y, residual, w1, b1, w2, b2, film)
    return torch.ops.keisei_fused_se.se_unit_cpu(y, residual, w1, b1, w2, b2, film)


@torch.library.triton_op(f"{NAMESPACE}::se_unit_backward", mutates_args=())
def se_unit_backward(
    grad: Tensor,
    y: Tensor,
    out: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    film: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``se_unit`` for (y, residual, w1, b1, w2, b2), given its output."""
    if _runs_triton(y):
        if _TRITON_ERROR is not None:
            require_kernels("cuda")
        check_arguments(y, out, w1, b1, w2, b2, film)
        return se_unit_backward_triton(grad, y, out, w1, b1, w2, b2, film)
    return torch.ops.keisei_fused_se.se_unit_backward_cpu(grad, y, out, w1, b1, w2, b2, film)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: Tensor) -> None:
    y, _residual, w1, b1, w2, b2, film = inputs
    # The output gives relu's mask; everything else is recomputed from y in one pass.
    ctx.save_for_backward(y, output, w1, b1, w2, b2)
    ctx.film = film  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple:
    y, out, w1, b1, w2, b2 = ctx.saved_tensors  # type: ignore[attr-defined]
    grads = se_unit_backward(grad, y, out, w1, b1, w2, b2, ctx.film)  # type: ignore[attr-defined]
    return (*grads, None)


se_unit.register_autograd(_backward, setup_context=_setup_context)
