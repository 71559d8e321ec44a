"""GPU kernels of the fused SE unit, in Triton.

Forward (three launches instead of the eager sequence's eight):

1. ``_pool_kernel``   grid (B, C blocks): ``pooled[b, c] = mean_hw(y[b, c])`` in fp32.
2. ``_excite_kernel`` grid (B,): ``hidden = relu(w1 @ pooled + b1)``,
   ``gate = sigmoid(w2[:C] @ hidden + b2[:C])``, ``shift = w2[C:] @ hidden + b2[C:]`` (FiLM).
3. ``_apply_kernel``  grid (B, C blocks, HW blocks): ``out = relu(y * gate + shift + x)``.

Backward: ``_backward_reduce_kernel`` reads grad, out and y once (writes
``grad_residual = grad * (out > 0)`` and the per-channel sums of ``go * y``, ``go`` and ``y``),
the MLP's tiny backward runs as torch ops on ``(B, C)`` matrices, and
``_backward_apply_kernel`` writes ``grad_y = go * gate + d_pooled / HW``.

Activations are addressed through (batch, channel, board-cell) strides, so NCHW and
channels-last tensors take the same kernels. Every launch goes through
``torch.library.wrap_triton`` so torch.compile and AOTInductor see the kernels
(see :func:`keisei_plugin_fused_se.ops.se_unit`). On a CPU, the same functions run under
Triton's interpreter (``TRITON_INTERPRET=1``), which is how the tests check them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from keisei_plugin_fused_se.layout import activation_format, cell_strides


@triton.jit
def _pool_kernel(
    y_ptr,
    pooled_ptr,
    C,
    HW,
    stride_b,
    stride_c,
    stride_p,
    inv_hw,
    IS_FP64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    acc_dtype = tl.float64 if IS_FP64 else tl.float32
    b = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    acc = tl.zeros([BLOCK_C], dtype=acc_dtype)
    for p0 in range(0, HW, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask = mask_c[:, None] & (offs_p < HW)[None, :]
        ptrs = y_ptr + b * stride_b + offs_c[:, None] * stride_c + offs_p[None, :] * stride_p
        acc += tl.sum(tl.load(ptrs, mask=mask, other=0.0).to(acc_dtype), axis=1)
    tl.store(pooled_ptr + b * C + offs_c, acc * inv_hw, mask=mask_c)


@triton.jit
def _excite_kernel(
    pooled_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    gate_ptr,
    shift_ptr,
    C,
    H,
    FILM: tl.constexpr,
    IS_FP64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    acc_dtype = tl.float64 if IS_FP64 else tl.float32
    b = tl.program_id(0)
    offs_h = tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    acc_h = tl.zeros([BLOCK_H], dtype=acc_dtype)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        mask_c = offs_c < C
        s = tl.load(pooled_ptr + b * C + offs_c, mask=mask_c, other=0.0)
        w = tl.load(
            w1_ptr + offs_h[:, None] * C + offs_c[None, :],
            mask=mask_h[:, None] & mask_c[None, :],
            other=0.0,
        ).to(acc_dtype)
        acc_h += tl.sum(w * s[None, :], axis=1)
    bias1 = tl.load(b1_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    hidden = tl.where(mask_h, tl.maximum(acc_h + bias1, 0.0), 0.0)
    for c0 in range(0, C, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        mask_c = offs_c < C
        mask = mask_c[:, None] & mask_h[None, :]
        w = tl.load(w2_ptr + offs_c[:, None] * H + offs_h[None, :], mask=mask, other=0.0)
        logit = tl.sum(w.to(acc_dtype) * hidden[None, :], axis=1)
        logit += tl.load(b2_ptr + offs_c, mask=mask_c, other=0.0).to(acc_dtype)
        tl.store(gate_ptr + b * C + offs_c, 1.0 / (1.0 + tl.exp(-logit)), mask=mask_c)
        if FILM:
            w = tl.load(w2_ptr + (C + offs_c)[:, None] * H + offs_h[None, :], mask=mask, other=0.0)
            shift = tl.sum(w.to(acc_dtype) * hidden[None, :], axis=1)
            shift += tl.load(b2_ptr + C + offs_c, mask=mask_c, other=0.0).to(acc_dtype)
            tl.store(shift_ptr + b * C + offs_c, shift, mask=mask_c)


@triton.jit
def _apply_kernel(
    y_ptr,
    x_ptr,
    out_ptr,
    gate_ptr,
    shift_ptr,
    C,
    HW,
    stride_b,
    stride_c,
    stride_p,
    FILM: tl.constexpr,
    IS_FP64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    acc_dtype = tl.float64 if IS_FP64 else tl.float32
    b = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_c = offs_c < C
    mask = mask_c[:, None] & (offs_p < HW)[None, :]
    offs = b * stride_b + offs_c[:, None] * stride_c + offs_p[None, :] * stride_p
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
    gate = tl.load(gate_ptr + b * C + offs_c, mask=mask_c, other=0.0)
    z = y * gate[:, None] + x
    if FILM:
        z += tl.load(shift_ptr + b * C + offs_c, mask=mask_c, other=0.0)[:, None]
    z = tl.where(z > 0.0, z, tl.where(z == z, 0.0, z))  # relu that keeps NaN, like torch
    tl.store(out_ptr + offs, z.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_reduce_kernel(
    grad_ptr,
    y_ptr,
    out_ptr,
    grad_x_ptr,
    sum_gy_ptr,
    sum_g_ptr,
    sum_y_ptr,
    C,
    HW,
    stride_b,
    stride_c,
    stride_p,
    IS_FP64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    acc_dtype = tl.float64 if IS_FP64 else tl.float32
    b = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    acc_gy = tl.zeros([BLOCK_C], dtype=acc_dtype)
    acc_g = tl.zeros([BLOCK_C], dtype=acc_dtype)
    acc_y = tl.zeros([BLOCK_C], dtype=acc_dtype)
    for p0 in range(0, HW, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask = mask_c[:, None] & (offs_p < HW)[None, :]
        offs = b * stride_b + offs_c[:, None] * stride_c + offs_p[None, :] * stride_p
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
        o = tl.load(out_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
        go = tl.where(o > 0.0, g, 0.0)
        tl.store(grad_x_ptr + offs, go.to(grad_x_ptr.dtype.element_ty), mask=mask)
        acc_gy += tl.sum(go * y, axis=1)
        acc_g += tl.sum(go, axis=1)
        acc_y += tl.sum(y, axis=1)
    tl.store(sum_gy_ptr + b * C + offs_c, acc_gy, mask=mask_c)
    tl.store(sum_g_ptr + b * C + offs_c, acc_g, mask=mask_c)
    tl.store(sum_y_ptr + b * C + offs_c, acc_y, mask=mask_c)


@triton.jit
def _backward_apply_kernel(
    grad_x_ptr,
    grad_y_ptr,
    gate_ptr,
    coef_ptr,
    C,
    HW,
    stride_b,
    stride_c,
    stride_p,
    IS_FP64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    acc_dtype = tl.float64 if IS_FP64 else tl.float32
    b = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_c = offs_c < C
    mask = mask_c[:, None] & (offs_p < HW)[None, :]
    offs = b * stride_b + offs_c[:, None] * stride_c + offs_p[None, :] * stride_p
    go = tl.load(grad_x_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
    gate = tl.load(gate_ptr + b * C + offs_c, mask=mask_c, other=0.0)
    coef = tl.load(coef_ptr + b * C + offs_c, mask=mask_c, other=0.0)
    gy = go * gate[:, None] + coef[:, None]
    tl.store(grad_y_ptr + offs, gy.to(grad_y_ptr.dtype.element_ty), mask=mask)


_BLOCK_C = 32
_MAX_BLOCK_P = 128


def _blocks(hw: int) -> tuple[int, int]:
    """Channel and board-cell tile sizes: a whole 9x9 board (128 lanes) per tile row."""
    return _BLOCK_C, min(_MAX_BLOCK_P, triton.next_power_of_2(hw))


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def se_unit_forward_triton(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, film: bool
) -> Tensor:
    """``relu(y * sigmoid(g) [+ shift] + residual)`` with the Triton kernels."""
    fmt = activation_format(y)
    y = y.contiguous(memory_format=fmt)
    residual = residual.contiguous(memory_format=fmt)
    w1, b1, w2, b2 = (t.contiguous() for t in (w1, b1, w2, b2))
    batch, channels, height, width = y.shape
    hw = height * width
    hidden = w1.shape[0]
    acc = _accumulate_dtype(y.dtype)
    is_fp64 = acc == torch.float64
    out = torch.empty(y.shape, dtype=y.dtype, device=y.device, memory_format=fmt)
    pooled = torch.empty((batch, channels), dtype=acc, device=y.device)
    gate = torch.empty((batch, channels), dtype=acc, device=y.device)
    shift = torch.empty((batch, channels) if film else (1,), dtype=acc, device=y.device)
    stride_b, stride_c, stride_p = cell_strides(y, fmt)
    block_c, block_p = _blocks(hw)
    c_blocks = triton.cdiv(channels, block_c)

    wrap_triton(_pool_kernel)[(batch, c_blocks)](
        y, pooled, channels, hw, stride_b, stride_c, stride_p, 1.0 / hw,
        IS_FP64=is_fp64, BLOCK_C=block_c, BLOCK_P=block_p,
    )  # fmt: skip
    block_h = triton.next_power_of_2(hidden)
    excite_block_c = max(1, min(64, 8192 // block_h))
    wrap_triton(_excite_kernel)[(batch,)](
        pooled, w1, b1, w2, b2, gate, shift, channels, hidden,
        FILM=film, IS_FP64=is_fp64, BLOCK_C=excite_block_c, BLOCK_H=block_h,
    )  # fmt: skip
    wrap_triton(_apply_kernel)[(batch, c_blocks, triton.cdiv(hw, block_p))](
        y, residual, out, gate, shift, channels, hw, stride_b, stride_c, stride_p,
        FILM=film, IS_FP64=is_fp64, BLOCK_C=block_c, BLOCK_P=block_p,
    )  # fmt: skip
    return out


def se_unit_backward_triton(
    grad: Tensor,
    y: Tensor,
    out: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    film: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`se_unit_forward_triton` for (y, residual, w1, b1, w2, b2)."""
    fmt = activation_format(y)
    y = y.contiguous(memory_format=fmt)
    out = out.contiguous(memory_format=fmt)
    grad = grad.contiguous(memory_format=fmt)
    batch, channels, height, width = y.shape
    hw = height * width
    acc = _accumulate_dtype(y.dtype)
    is_fp64 = acc == torch.float64
    grad_y = torch.empty(y.shape, dtype=y.dtype, device=y.device, memory_format=fmt)
    grad_x = torch.empty(y.shape, dtype=y.dtype, device=y.device, memory_format=fmt)
    sum_gy, sum_g, sum_y = (
        torch.empty((batch, channels), dtype=acc, device=y.device) for _ in range(3)
    )
    stride_b, stride_c, stride_p = cell_strides(y, fmt)
    block_c, block_p = _blocks(hw)
    c_blocks = triton.cdiv(channels, block_c)
    wrap_triton(_backward_reduce_kernel)[(batch, c_blocks)](
        grad, y, out, grad_x, sum_gy, sum_g, sum_y, channels, hw,
        stride_b, stride_c, stride_p, IS_FP64=is_fp64, BLOCK_C=block_c, BLOCK_P=block_p,
    )  # fmt: skip

    # The MLP's backward works on (B, C) and (B, hidden) matrices: a few small GEMMs.
    w1a, b1a, w2a, b2a = (t.to(acc) for t in (w1, b1, w2, b2))
    pooled = sum_y / hw
    hidden = torch.relu(pooled @ w1a.t() + b1a)
    gate = torch.sigmoid(hidden @ w2a[:channels].t() + b2a[:channels])
    d_gate = sum_gy * gate * (1.0 - gate)
    d_excite = torch.cat([d_gate, sum_g], dim=1) if film else d_gate
    d_hidden = (d_excite @ w2a) * (hidden > 0)
    coef = (d_hidden @ w1a) / hw

    wrap_triton(_backward_apply_kernel)[(batch, c_blocks, triton.cdiv(hw, block_p))](
        grad_x, grad_y, gate, coef, channels, hw, stride_b, stride_c, stride_p,
        IS_FP64=is_fp64, BLOCK_C=block_c, BLOCK_P=block_p,
    )  # fmt: skip
    grad_w2 = (d_excite.t() @ hidden).to(w2.dtype)
    grad_b2 = d_excite.sum(0).to(b2.dtype)
    grad_w1 = (d_hidden.t() @ pooled).to(w1.dtype)
    grad_b1 = d_hidden.sum(0).to(b1.dtype)
    return grad_y, grad_x, grad_w1, grad_b1, grad_w2, grad_b2
