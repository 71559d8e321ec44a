"""Run with ATEN_CPU_CAPABILITY=<isa>: the kernels built for <isa> run and match the reference."""

import sys

import torch
from keisei_plugin_fused_se.ops import cpu_kernel_isa, se_unit
from keisei_plugin_fused_se.testing import check_results, make_inputs

expected = sys.argv[1]
assert cpu_kernel_isa() == expected, (cpu_kernel_isa(), expected)
for dtype in (torch.float32, torch.bfloat16):
    for film, channels_last in ((False, False), (True, True)):
        inputs = [t.requires_grad_() for t in make_inputs(3, 37, 9, 9, 5, film, dtype, channels_last, seed=7)]
        grad = torch.randn(inputs[0].shape).to(dtype)
        out = se_unit(*inputs, film)
        grads = torch.autograd.grad(out, inputs, grad)
        check_results(out.detach(), grads, [t.detach() for t in inputs], film, grad, f"{expected} {dtype}")
print("ok", cpu_kernel_isa())
