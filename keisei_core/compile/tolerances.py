"""How close a compiled model's outputs must be to eager's, by the precision it computes in.

float32 is tight: compilers reorder reductions and pick other conv algorithms, which
moves results by a few ulps per layer, nothing more. Gradients are the exception: in
train mode BatchNorm's backward through a deep tower amplifies that noise, so eager
float32 itself is 1.6e-3 (relative L2) off float64 on the default ResTower at batch 64,
and Inductor 3.5e-3; float32 gradients get 1e-2. bfloat16 keeps 8 mantissa bits
(relative rounding 2^-9 = 0.2 % per op) and float16 keeps 11; through a residual tower
errors add up, so their bounds are loose, and they are compared against the float32
eager model (the question is "is the bf16 model still the same network").
The values were chosen from the differences measured on the bundled models
(docs/compilation.md, "Tolerances"); pass ``tolerances=`` to tighten or loosen them.
"""

from __future__ import annotations

from collections.abc import Mapping

from keisei_core.compile.report import Tolerance
from keisei_core.errors import InputError
from keisei_core.specs import DTYPES

DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(atol=1e-4, rtol=1e-4, grad_rtol=1e-2),
    "bfloat16": Tolerance(atol=0.1, rtol=0.05, grad_rtol=0.35),
    "float16": Tolerance(atol=2e-2, rtol=1e-2, grad_rtol=0.1),
}

Tolerances = Tolerance | Mapping[str, Tolerance] | None


def resolve_tolerance(precision: str, tolerances: Tolerances = None) -> Tolerance:
    """The tolerance for ``precision``: ``tolerances`` as given (one for all, or per dtype),
    else the default."""
    if precision not in DTYPES:
        raise InputError(f"unknown precision {precision!r}; expected one of {sorted(DTYPES)}")
    if isinstance(tolerances, Tolerance):
        return tolerances
    if tolerances is not None:
        unknown = sorted(set(tolerances) - DTYPES)
        if unknown:
            raise InputError(f"tolerances for unknown dtype(s) {unknown}; expected keys from {sorted(DTYPES)}")
        if precision in tolerances:
            return tolerances[precision]
    return DEFAULT_TOLERANCES[precision]
