"""Run with TRITON_INTERPRET=1: the Triton kernels (the CUDA path) on CPU tensors through
Triton's interpreter, forward and backward, against the reference.

Sizes cover several channel blocks (C > 32) with a ragged last one, boards larger than
one 128-cell tile (13x13 = 169 cells), hidden widths that are not powers of two, plain
and FiLM, NCHW and channels-last, and every dtype the GPU path supports.
"""

import os
import sys

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "set TRITON_INTERPRET=1 before triton is imported"

from keisei_plugin_fused_se.testing import check_results, make_inputs  # noqa: E402
from keisei_plugin_fused_se.triton_kernels import (  # noqa: E402
    se_unit_backward_triton,
    se_unit_forward_triton,
)

CASES = [
    # batch, channels, height, width, hidden, film, dtype, channels_last
    (2, 37, 9, 9, 5, False, torch.float32, False),
    (1, 37, 13, 13, 6, True, torch.float32, True),
    (3, 70, 5, 7, 3, True, torch.float32, False),
    (2, 33, 9, 9, 64, False, torch.float32, True),
    (2, 37, 9, 9, 5, True, torch.bfloat16, False),
    (2, 37, 9, 9, 5, False, torch.bfloat16, True),
    (2, 19, 9, 9, 4, True, torch.float16, True),
    (2, 19, 6, 9, 4, False, torch.float64, False),
]

failures = []
for index, (batch, channels, height, width, hidden, film, dtype, channels_last) in enumerate(CASES):
    inputs = make_inputs(batch, channels, height, width, hidden, film, dtype, channels_last, seed=index)
    grad = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(100 + index)).to(dtype)
    label = f"case {index}: {CASES[index]}"
    try:
        out = se_unit_forward_triton(*inputs, film)
        if channels_last and not inputs[0].is_contiguous():
            assert out.is_contiguous(memory_format=torch.channels_last), f"{label}: output layout"
        grads = se_unit_backward_triton(grad, inputs[0], out, *inputs[2:], film)
        check_results(out, grads, inputs, film, grad, label)
    except AssertionError as exc:
        failures.append(str(exc))
# The same kernels behind the operator: keisei_fused_se::se_unit and its autograd formula,
# with CPU tensors routed to the Triton branch that CUDA tensors take. (Traced paths,
# torch.compile and export, need a GPU: under the interpreter wrap_triton hands back the
# interpreted kernel itself, which cannot run on fake tensors.)
from keisei_plugin_fused_se import ops  # noqa: E402

ops._runs_triton = lambda tensor: True
for index, film in enumerate((False, True)):
    inputs = make_inputs(2, 37, 9, 9, 5, film, torch.float32, film, seed=50 + index)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    grad = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(200 + index))
    label = f"op through the Triton branch, film={film}"
    try:
        out = ops.se_unit(*leaves, film)
        grads = torch.autograd.grad(out, leaves, grad)
        check_results(out.detach(), grads, inputs, film, grad, label)
    except AssertionError as exc:
        failures.append(str(exc))

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"ok: {len(CASES)} kernel cases and 2 operator cases through the Triton interpreter")
