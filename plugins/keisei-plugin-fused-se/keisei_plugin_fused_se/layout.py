"""Activation layouts the fused kernels accept, shared by every implementation.

The C++ kernel (csrc/fused_se.cpp::activation_format), the Triton launchers and the fake
(meta) implementations all follow this rule, so eager outputs and traced outputs have
the same strides: a channels-last-contiguous input that is not also NCHW-contiguous
stays channels-last; anything else is computed (and returned) NCHW-contiguous.
"""

from __future__ import annotations

import torch


def activation_format(y: torch.Tensor) -> torch.memory_format:
    if not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def cell_strides(y: torch.Tensor, fmt: torch.memory_format) -> tuple[int, int, int]:
    """(batch, channel, board-cell) element strides of ``y`` laid out densely in ``fmt``;
    the board's H and W flatten into one cell index in both layouts."""
    _, channels, height, width = y.shape
    if fmt == torch.channels_last:
        return channels * height * width, 1, channels
    return channels * height * width, height * width, 1
