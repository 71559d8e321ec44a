"""The operator's registrations: opcheck, gradcheck, torch.compile without graph breaks,
torch.export, the per-ISA CPU kernels, input checks and the not-built error."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from keisei_plugin_fused_se.module import FusedSEUnit
from keisei_plugin_fused_se.ops import cpu_kernel_isa, cpu_kernels_available, se_unit
from keisei_plugin_fused_se.testing import make_inputs

from keisei_core.nn.se import SqueezeExcitation, SqueezeExcitationFiLM

CASES = [(False, False), (False, True), (True, False), (True, True)]  # (film, channels_last)


def leaves(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(True) for t in inputs]


def test_cpu_kernel_is_built() -> None:
    assert cpu_kernels_available(), "build it: pip install --no-build-isolation -e plugins/keisei-plugin-fused-se"
    assert cpu_kernel_isa() in {"avx512", "avx2", "default"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built with OpenMP on Linux only")
def test_cpu_kernels_run_on_torchs_threads() -> None:
    """The kernels' at::parallel_for runs on torch's OpenMP threads and follows
    torch.set_num_threads. (Built without -fopenmp, the pragma inside at::parallel_for is
    dropped and every call runs on one thread; with a second OpenMP runtime the thread
    numbers torch reports would all be 0. Both read as 1 here.)"""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.ops.keisei_fused_se.cpu_parallel_threads() == 2
        torch.set_num_threads(1)
        assert torch.ops.keisei_fused_se.cpu_parallel_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("film", "channels_last"), CASES)
def test_opcheck(film: bool, channels_last: bool) -> None:
    """Schema, autograd registration, fake tensor (incl. output strides) and AOT dispatch."""
    inputs = leaves(make_inputs(2, 6, 5, 7, 3, film, channels_last=channels_last))
    torch.library.opcheck(se_unit, (*inputs, film))


@pytest.mark.parametrize(("film", "channels_last"), CASES)
def test_opcheck_of_the_mask_ops(film: bool, channels_last: bool) -> None:
    """The internal ops behind se_unit_cpu's C++ autograd formula: schema, fake tensors,
    AOT dispatch; and the forward's mask has a bit set exactly where the output is positive."""
    y, residual, *weights = make_inputs(2, 6, 5, 7, 3, film, channels_last=channels_last)
    torch.library.opcheck(torch.ops.keisei_fused_se.se_unit_train_cpu, (y, residual, *weights, film))
    out, mask = torch.ops.keisei_fused_se.se_unit_train_cpu(y, residual, *weights, film)
    grad = torch.randn(y.shape).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.library.opcheck(torch.ops.keisei_fused_se.se_unit_backward_mask_cpu, (grad, y, mask, *weights, film))
    elements = out[0].numel()
    for b in range(out.shape[0]):
        stored = out[b].permute(1, 2, 0) if channels_last else out[b]  # memory order
        bits = torch.tensor([(int(mask[b, k // 8]) >> (k % 8)) & 1 for k in range(elements)], dtype=torch.bool)
        assert torch.equal(bits, stored.reshape(-1) > 0)


def test_mask_ops_refuse_a_wrong_mask() -> None:
    y, residual, *weights = make_inputs(2, 6, 5, 7, 3, False)
    _out, mask = torch.ops.keisei_fused_se.se_unit_train_cpu(y, residual, *weights, False)
    for bad in (mask[:, :-8], mask.to(torch.int32), mask[:1]):
        with pytest.raises(RuntimeError, match="mask must be"):
            torch.ops.keisei_fused_se.se_unit_backward_mask_cpu(torch.ones_like(y), y, bad, *weights, False)


@pytest.mark.parametrize(("film", "channels_last"), CASES)
def test_gradcheck_float64(film: bool, channels_last: bool) -> None:
    inputs = leaves(make_inputs(2, 5, 5, 6, 3, film, torch.float64, channels_last))
    assert torch.autograd.gradcheck(lambda *t: se_unit(*t, film), tuple(inputs))


def _units(channels: int = 16, hidden: int = 4) -> dict[str, tuple[torch.nn.Module, FusedSEUnit]]:
    torch.manual_seed(0)
    out = {}
    for cls in (SqueezeExcitation, SqueezeExcitationFiLM):
        eager = cls(channels, hidden)
        out[cls.__name__] = (eager, FusedSEUnit.from_unit(cls(channels, hidden)))
        out[cls.__name__][1].load_state_dict(eager.state_dict())
    return out


@pytest.mark.slow
def test_torch_compile_fullgraph_forward_and_backward() -> None:
    torch._dynamo.reset()
    for name, (eager, fused) in _units().items():
        y = torch.randn(3, 16, 9, 9)
        x = torch.randn(3, 16, 9, 9)
        explanation = torch._dynamo.explain(fused)(y, x)
        assert explanation.graph_break_count == 0, f"{name}: {explanation.break_reasons}"
        compiled = torch.compile(fused, fullgraph=True)
        y1, x1 = y.clone().requires_grad_(), x.clone().requires_grad_()
        y2, x2 = y.clone().requires_grad_(), x.clone().requires_grad_()
        out = compiled(y1, x1)
        expected = eager(y2, x2)
        torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)
        grad = torch.randn_like(out)
        got = torch.autograd.grad(out, [y1, x1, *fused.parameters()], grad)
        want = torch.autograd.grad(expected, [y2, x2, *eager.parameters()], grad)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=2e-5, rtol=2e-5)


def test_torch_export_keeps_one_op_node(tmp_path: object) -> None:
    _, fused = _units()["SqueezeExcitationFiLM"]
    y, x = torch.randn(2, 16, 9, 9), torch.randn(2, 16, 9, 9)
    program = torch.export.export(fused, (y, x))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count("keisei_fused_se.se_unit.default") == 1, targets
    assert not any("mean" in t or "sigmoid" in t for t in targets), targets
    path = os.path.join(str(tmp_path), "se.pt2")
    torch.export.save(program, path)
    loaded = torch.export.load(path)
    torch.testing.assert_close(loaded.module()(y, x), fused(y, x))


def test_input_checks() -> None:
    y, x, w1, b1, w2, b2 = make_inputs(2, 8, 5, 5, 2, False)
    with pytest.raises(RuntimeError, match="residual shape"):
        se_unit(y, x[:, :4], w1, b1, w2, b2, False)
    with pytest.raises(RuntimeError, match="w2 must be"):
        se_unit(y, x, w1, b1, w2, b2, True)  # FiLM needs 2C rows in w2
    with pytest.raises(RuntimeError, match="dtype"):
        se_unit(y, x.double(), w1, b1, w2, b2, False)
    with pytest.raises(RuntimeError, match="unsupported dtype"):
        se_unit(*(t.to(torch.int32) for t in (y, x, w1, b1, w2, b2)), False)


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_lower_isa_kernels_match_reference(isa: str, subprocess_checks) -> None:  # type: ignore[no-untyped-def]
    """ATEN_CPU_CAPABILITY lowers torch's and our kernel choice alike; each ISA build is right."""
    if cpu_kernel_isa() == "default" and isa != "default":
        pytest.skip("this machine runs only the default kernels")
    code, output = subprocess_checks.result(f"isa-{isa}")
    assert code == 0, output


def test_not_built_error_names_the_build_command(subprocess_checks) -> None:  # type: ignore[no-untyped-def]
    code, output = subprocess_checks.result("not-built")
    assert code == 0, output
    lines = [ln for ln in output.strip().splitlines() if "keisei-plugin-fused-se" in ln]
    assert len(lines) == 2, output
    assert all("pip install --no-build-isolation -e plugins/keisei-plugin-fused-se" in ln for ln in lines)


def test_triton_kernels_through_the_interpreter(subprocess_checks) -> None:  # type: ignore[no-untyped-def]
    """The GPU path's kernels, run on the CPU by Triton's interpreter (TRITON_INTERPRET=1)."""
    pytest.importorskip("triton")
    code, output = subprocess_checks.result("triton-interpret")
    assert code == 0, output


def test_module_on_cpu_calls_the_cpp_op_with_its_cpp_autograd() -> None:
    """Outside torch.compile, FusedSEUnit on CPU calls ``se_unit_cpu`` directly, with or
    without gradients (the public op's Python dispatch and autograd formula cost more
    than the kernel at batch 1). Its C++ autograd formula (ReLU's mask saved as bits)
    gives exactly the public op's gradients (mask read from the output), and gradcheck
    passes in float64."""
    def op_calls(
        fused: FusedSEUnit, y: torch.Tensor, x: torch.Tensor, grad: bool
    ) -> tuple[list[str], torch.Tensor, tuple[torch.Tensor, ...]]:
        y1, x1 = y.clone().requires_grad_(grad), x.clone().requires_grad_(grad)
        with torch.profiler.profile() as profile, torch.set_grad_enabled(grad):
            out = fused(y1, x1)
            grads = torch.autograd.grad(out, [y1, x1, *fused.parameters()], torch.ones_like(out)) if grad else ()
        calls = [e.name for e in profile.events() if e.name.startswith("keisei_fused_se::")]
        return calls, out, grads

    for name, (_eager, fused) in _units().items():
        y, x = torch.randn(2, 16, 9, 9), torch.randn(2, 16, 9, 9)
        acting, acting_out, _ = op_calls(fused, y, x, False)
        assert acting == ["keisei_fused_se::se_unit_cpu"], (name, acting)
        training, training_out, grads = op_calls(fused, y, x, True)
        assert "keisei_fused_se::se_unit" not in training, (name, training)
        # Training saves ReLU's mask as bits: the forward that makes it, the backward that reads it.
        assert training.count("keisei_fused_se::se_unit_train_cpu") == 1, (name, training)
        assert "keisei_fused_se::se_unit_backward_mask_cpu" in training, (name, training)
        assert "keisei_fused_se::se_unit_backward_cpu" not in training, (name, training)
        torch.testing.assert_close(acting_out, training_out.detach(), atol=0, rtol=0)

        # The same gradients through the public op's (Python) autograd formula.
        y2, x2 = y.clone().requires_grad_(), x.clone().requires_grad_()
        weights = [fused.fc1.weight.flatten(1), fused.fc1.bias, fused.fc2.weight.flatten(1), fused.fc2.bias]
        public = se_unit(y2, x2, *weights, fused.film)
        expected = torch.autograd.grad(public, [y2, x2, *fused.parameters()], torch.ones_like(public))
        for got, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_cpp_autograd_of_the_cpu_op_passes_gradcheck() -> None:
    torch.manual_seed(0)
    for film in (False, True):
        excite = 2 * 5 if film else 5
        inputs = (
            torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True),
            torch.randn(3, 5, dtype=torch.float64, requires_grad=True),
            torch.randn(3, dtype=torch.float64, requires_grad=True),
            torch.randn(excite, 3, dtype=torch.float64, requires_grad=True),
            torch.randn(excite, dtype=torch.float64, requires_grad=True),
        )
        assert torch.autograd.gradcheck(
            lambda *args: torch.ops.keisei_fused_se.se_unit_cpu(*args, film), inputs  # noqa: B023
        )
