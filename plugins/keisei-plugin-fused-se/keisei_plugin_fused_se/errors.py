"""Errors of the fused SE plugin a user can cause (one line each, CLI exit status 2)."""

from __future__ import annotations

from keisei_core.plugin import KeiseiError


class FusedSEError(KeiseiError):
    """The fused SE operator cannot run as asked."""


class KernelNotBuiltError(FusedSEError):
    """The C++ CPU kernel (or Triton, for CUDA tensors) is not available."""
