"""How close a transformed model's outputs must stay to eager's, and the comparison.

The contracts use the compile core's tolerances (:mod:`keisei_core.compile.tolerances`):
the same bound ``|compiled - eager| <= atol + rtol * |eager|`` that ``compile_model``
validated with, applied to inputs the compile never saw. A strategy that computes in a
lower precision (its spec's ``precision``) gets that dtype's looser bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import torch

    from keisei_core.specs import StrategySpec

# From lowest to highest precision: a composition is judged by its loosest part.
_LOOSENESS = ("bfloat16", "float16", "float32")


@attrs.frozen
class Tolerance:
    rtol: float
    atol: float
    dtype: str


def tolerance_for(specs: Iterable[StrategySpec]) -> Tolerance:
    """The tolerance of the lowest precision any part of a (composed) strategy computes in."""
    from keisei_core.compile import resolve_tolerance

    precisions = {s.precision for s in specs if s.precision} | {"float32"}
    precision = min(precisions, key=_LOOSENESS.index)
    bound = resolve_tolerance(precision)
    return Tolerance(rtol=bound.rtol, atol=bound.atol, dtype=precision)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: Tolerance, what: str) -> None:
    """Shapes equal and values within ``tolerance``; the message names ``what``."""
    import torch

    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} differs from eager's {tuple(expected.shape)}")
    torch.testing.assert_close(
        actual.detach().float().cpu(),
        expected.detach().float().cpu(),
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        msg=lambda detail: f"{what} differs from eager beyond the {tolerance.dtype} tolerance: {detail}",
    )
