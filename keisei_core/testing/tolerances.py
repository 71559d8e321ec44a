"""How close a transformed model's outputs must stay to eager's, and the comparisons.

Float32 strategies reorder arithmetic (fused kernels, other convolution algorithms), so
they get a small tolerance rather than bitwise equality; strategies that compute in
bfloat16 or float16 get that dtype's (8 and 11 mantissa bits). Absolute tolerances are
scaled by the magnitude of the eager output so large logits are not held to 1e-4.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import torch

    from keisei_core.specs import StrategySpec


@attrs.frozen
class Tolerance:
    rtol: float
    atol: float
    dtype: str

    def scaled_atol(self, reference: torch.Tensor) -> float:
        magnitude = float(reference.detach().abs().max()) if reference.numel() else 0.0
        return self.atol * max(1.0, magnitude)


TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=1e-4, atol=1e-4, dtype="float32"),
    "float16": Tolerance(rtol=1e-2, atol=1e-2, dtype="float16"),
    "bfloat16": Tolerance(rtol=5e-2, atol=5e-2, dtype="bfloat16"),
}


def tolerance_for(specs: Iterable[StrategySpec]) -> Tolerance:
    """The loosest tolerance among the precisions the (composed) strategy computes in."""
    found = [TOLERANCES[s.precision] for s in specs if s.precision in TOLERANCES]
    if not found:
        return TOLERANCES["float32"]
    return max(found, key=lambda t: t.atol)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: Tolerance, what: str) -> None:
    """Shapes equal and values within ``tolerance``; the message names ``what``."""
    import torch

    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} differs from eager's {tuple(expected.shape)}")
    torch.testing.assert_close(
        actual.detach().float().cpu(),
        expected.detach().float().cpu(),
        rtol=tolerance.rtol,
        atol=tolerance.scaled_atol(expected),
        msg=lambda detail: f"{what} differs from eager beyond {tolerance.dtype} tolerance: {detail}",
    )
