"""Run with ATEN_CPU_CAPABILITY=<isa>: the kernels built for <isa> run and match the reference.

Batch 3 takes the per-sample MLP, batch 17 the grouped one (four groups of four and one
left over); the two float32 cases of 4 MiB and more take the streaming stores (AVX2 and
AVX512; the default build stores normally), NCHW and channels-last. Each case runs through
the public op (ReLU's mask read from the output) and through se_unit_cpu, whose C++
autograd saves the mask as bits."""

import sys

import torch
from keisei_plugin_fused_se.ops import cpu_kernel_isa, se_unit
from keisei_plugin_fused_se.testing import check_results, make_inputs

expected = sys.argv[1]
assert cpu_kernel_isa() == expected, (cpu_kernel_isa(), expected)
cases = [
    (batch, 37, 9, 9, film, channels_last, dtype)
    for batch in (3, 17)
    for dtype in (torch.float32, torch.bfloat16)
    for film, channels_last in ((False, False), (True, True))
]
cases += [
    (16, 200, 19, 19, True, False, torch.float32),
    (14, 320, 16, 16, False, True, torch.float32),
]
for batch, channels, height, width, film, channels_last, dtype in cases:
    inputs = make_inputs(batch, channels, height, width, 5, film, dtype, channels_last, seed=7)
    inputs = [t.requires_grad_() for t in inputs]
    grad = torch.randn(inputs[0].shape).to(dtype)
    for op in (se_unit, torch.ops.keisei_fused_se.se_unit_cpu):
        out = op(*inputs, film)
        grads = torch.autograd.grad(out, inputs, grad)
        what = f"{expected} {op} {dtype} batch {batch} C {channels} {height}x{width} channels_last={channels_last}"
        check_results(out.detach(), grads, [t.detach() for t in inputs], film, grad, what)
print("ok", cpu_kernel_isa())
