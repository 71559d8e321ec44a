"""Inputs and tolerances for checking a fused SE implementation against the reference.

Used by the plugin's tests (including the Triton interpreter run in a subprocess) and
usable by anyone writing another backend for ``keisei_fused_se::se_unit``.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Tolerances against a float64 reference computed from the same (rounded) inputs: the
# fused kernels accumulate in float32 (float64 for float64) and round once at the end.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}


def make_inputs(
    batch: int,
    channels: int,
    height: int,
    width: int,
    hidden: int,
    film: bool,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    seed: int = 0,
) -> list[Tensor]:
    """(y, residual, w1, b1, w2, b2) with the magnitudes of a trained tower: unit-scale
    activations, Kaiming-uniform-sized weights."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, channels, height, width)
    excite = 2 * channels if film else channels
    y = torch.randn(shape, generator=gen)
    residual = torch.randn(shape, generator=gen)
    w1 = (torch.rand((hidden, channels), generator=gen) * 2 - 1) / channels**0.5
    b1 = (torch.rand((hidden,), generator=gen) * 2 - 1) / channels**0.5
    w2 = (torch.rand((excite, hidden), generator=gen) * 2 - 1) / hidden**0.5
    b2 = (torch.rand((excite,), generator=gen) * 2 - 1) / hidden**0.5
    tensors = [t.to(dtype) for t in (y, residual, w1, b1, w2, b2)]
    if channels_last:
        tensors[0] = tensors[0].contiguous(memory_format=torch.channels_last)
        tensors[1] = tensors[1].contiguous(memory_format=torch.channels_last)
    return tensors


def assert_close_scaled(actual: Tensor, expected: Tensor, dtype: torch.dtype, what: str) -> None:
    """|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|.

    Sums of many terms (weight gradients) are compared relative to their largest entry,
    since rounding the summands once is what the low-precision dtypes do."""
    atol, rtol = TOLERANCES[dtype]
    actual = actual.double()
    expected = expected.double()
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    excess = (actual - expected).abs() - (atol * scale + rtol * expected.abs())
    worst = float(excess.max()) if excess.numel() else 0.0
    assert worst <= 0, (
        f"{what} ({dtype}): max |diff| {float((actual - expected).abs().max()):.3g} exceeds tolerance "
        f"(atol {atol} x scale {scale:.3g}, rtol {rtol})"
    )


GRAD_NAMES = ("y", "residual", "w1", "b1", "w2", "b2")


def reference_results(
    inputs: list[Tensor], film: bool, grad: Tensor, tested_out: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The reference output and gradients in float64, from the inputs as given (already
    rounded to their dtype), for the output gradient ``grad``.

    Where the float64 pre-activation lies within the tested implementation's rounding of
    zero (float32 arithmetic, or float64 for float64 inputs), the final ReLU's sign is
    not defined by the inputs: either gradient mask is right. There the reference takes
    the mask of ``tested_out`` (the output under test, positive or not), as torch's own
    ReLU backward reads its output; everywhere else the float64 sign decides. Hypothesis
    found such an element: pre-activation 4.5e-8, a float16 output of 0 from the op."""
    from keisei_plugin_fused_se.reference import se_unit_preactivation

    leaves = [t.detach().double().requires_grad_(True) for t in inputs]
    y, residual, w1, b1, w2, b2 = leaves
    pre = se_unit_preactivation(y, residual, w1, b1, w2, b2, film)
    out = torch.relu(pre)
    passes = pre.detach() > 0
    if tested_out is not None:
        relative = 1e-12 if inputs[0].dtype == torch.float64 else 1e-5
        scale = 1.0 + y.detach().abs() + residual.detach().abs() + pre.detach().abs()
        unsure = pre.detach().abs() <= relative * scale
        passes = torch.where(unsure, tested_out.detach().double() > 0, passes)
    grads = torch.autograd.grad(pre, leaves, grad.double() * passes)
    return out.detach(), tuple(grads)


def check_results(
    out: Tensor,
    grads: tuple[Tensor, ...] | None,
    inputs: list[Tensor],
    film: bool,
    grad: Tensor,
    label: str,
) -> None:
    """Assert ``out`` (and ``grads`` for y, residual, w1, b1, w2, b2) match the reference,
    and that the output keeps the activation dtype and shape."""
    dtype = inputs[0].dtype
    assert out.dtype == dtype and out.shape == inputs[0].shape, f"{label}: output {out.dtype} {tuple(out.shape)}"
    ref_out, ref_grads = reference_results(inputs, film, grad, out)
    assert_close_scaled(out, ref_out, dtype, f"{label}: output")
    if grads is None:
        return
    for name, got, want, given in zip(GRAD_NAMES, grads, ref_grads, inputs, strict=True):
        assert got.dtype == given.dtype and got.shape == given.shape, f"{label}: grad {name} {got.dtype} {tuple(got.shape)}"
        assert_close_scaled(got, want, dtype, f"{label}: grad of {name}")
