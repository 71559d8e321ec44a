"""Property tests: the fused op (C++ CPU kernel) against the reference, forward and backward.

Batch sizes from 1 (under 16 the CPU kernel runs the MLP per sample; from 16 on, for
groups of four samples of each thread's range with transposed weights, so 16-21 cover
full groups and every remainder on one or two threads),
channel counts that are and are not multiples of the vector width (16 floats on AVX512, 8
on AVX2), boards 5-19 (square and not), hidden widths, plain and FiLM, NCHW and
channels-last, float32 and bfloat16 (plus float16 and float64). Outputs of 4 MiB and more
(float32) take the streaming-store path: its own test below.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from keisei_plugin_fused_se.ops import se_unit
from keisei_plugin_fused_se.testing import check_results, make_inputs

shapes = st.fixed_dictionaries(
    {
        "batch": st.one_of(st.integers(1, 5), st.integers(16, 21)),
        "channels": st.one_of(st.integers(1, 40), st.sampled_from([16, 17, 31, 32, 33, 64])),
        "height": st.integers(5, 19),
        "width": st.integers(5, 19),
        "hidden": st.integers(1, 12),
        "film": st.booleans(),
        "channels_last": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


# Both ways a CPU training step reaches the kernels: the public op, whose (Python) autograd
# formula saves the output and reads ReLU's mask from it, and the internal op that
# FusedSEUnit calls on CPU, whose C++ formula saves the mask as bits.
ENTRY_POINTS = {
    "se_unit (mask from the output)": se_unit,
    "se_unit_cpu (mask in bits)": torch.ops.keisei_fused_se.se_unit_cpu,
}


def run_fused(
    inputs: list[torch.Tensor], film: bool, grad: torch.Tensor, op: object = se_unit
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    # clone() keeps channels-last strides, so the op sees the layout under test
    out = op(*leaves, film)  # type: ignore[operator]
    grads = torch.autograd.grad(out, leaves, grad)
    return out.detach(), tuple(grads)


def check(case: dict, dtype: torch.dtype) -> None:
    inputs = make_inputs(
        case["batch"], case["channels"], case["height"], case["width"], case["hidden"],
        case["film"], dtype, case["channels_last"], case["seed"],
    )  # fmt: skip
    grad = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(case["seed"] + 1)).to(dtype)
    for entry, op in ENTRY_POINTS.items():
        out, grads = run_fused(inputs, case["film"], grad, op)
        if case["channels_last"] and not inputs[0].is_contiguous():
            assert out.is_contiguous(memory_format=torch.channels_last), "channels-last input, output not channels-last"
        check_results(out, grads, inputs, case["film"], grad, f"{entry}: {dtype} {case}")


@settings(max_examples=60)
@given(case=shapes)
def test_float32_matches_reference(case: dict) -> None:
    check(case, torch.float32)


@settings(max_examples=60)
@given(case=shapes)
def test_bfloat16_matches_reference(case: dict) -> None:
    check(case, torch.bfloat16)


@settings(max_examples=15)
@given(case=shapes, dtype=st.sampled_from([torch.float16, torch.float64]))
def test_float16_and_float64_match_reference(case: dict, dtype: torch.dtype) -> None:
    check(case, dtype)


def test_relu_sign_within_rounding_of_zero() -> None:
    """Hypothesis found this: one element's float64 pre-activation is 4.5e-8, and the op's
    float32 arithmetic (rightly) made its float16 output 0; the reference follows the op's
    ReLU mask where the sign is within rounding of zero (testing.reference_results)."""
    case = {"batch": 21, "channels": 32, "height": 5, "width": 10, "hidden": 11, "film": True,
            "channels_last": False, "seed": 6288}  # fmt: skip
    check(case, torch.float16)


@pytest.mark.parametrize("channels_last", [False, True])
def test_keisei_shapes_match_reference(channels_last: bool) -> None:
    """The production shape: batch 64, 256 channels, 9x9, hidden 64."""
    for film in (False, True):
        check(
            {"batch": 64, "channels": 256, "height": 9, "width": 9, "hidden": 64, "film": film,
             "channels_last": channels_last, "seed": 3},
            torch.float32,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("batch", "channels", "height", "width", "channels_last", "why"),
    [
        (16, 200, 19, 19, False, "C*HW = 72200: every other sample starts unaligned (regular stores) and ends in a tail"),
        (64, 1100, 3, 5, False, "boards under 16 cells: a vector would span three channels (regular stores)"),
        (16, 200, 19, 19, True, "channels-last with C not a multiple of 16 (regular stores)"),
        (14, 320, 16, 16, True, "channels-last, C a multiple of 16: streamed, batch not a multiple of the group"),
        (13, 256, 19, 17, False, "NCHW, aligned samples, odd batch: streamed with channel splits in most vectors"),
    ],
)
def test_large_float32_outputs_match_reference(
    batch: int, channels: int, height: int, width: int, channels_last: bool, why: str
) -> None:
    """Float32 outputs of at least 4 MiB are written with non-temporal stores where the
    sample's address and layout allow it, and normally where they do not; both agree with
    the reference, forward and backward."""
    assert batch * channels * height * width * 4 >= 4 << 20, "below the streaming threshold"
    check(
        {"batch": batch, "channels": channels, "height": height, "width": width, "hidden": 8,
         "film": True, "channels_last": channels_last, "seed": 11},
        torch.float32,
    )  # fmt: skip


def test_mixed_layouts_and_non_contiguous_inputs() -> None:
    """A channels-last y with an NCHW residual, and a sliced (non-contiguous) y."""
    y, residual, *weights = make_inputs(2, 12, 9, 9, 3, True, seed=5)
    grad = torch.randn(y.shape)
    mixed = [y.contiguous(memory_format=torch.channels_last), residual, *weights]
    for entry, op in ENTRY_POINTS.items():
        out, grads = run_fused(mixed, True, grad, op)
        check_results(out, grads, mixed, True, grad, f"{entry}: channels-last y, NCHW residual")

    wide = torch.randn(2, 12, 9, 18)
    sliced = [wide[..., ::2], residual, *weights]
    assert not sliced[0].is_contiguous()
    out = se_unit(*sliced, True)
    assert out.is_contiguous()
    check_results(out, None, sliced, True, grad, "strided y")


def test_nan_propagates_like_the_reference() -> None:
    from keisei_plugin_fused_se.reference import se_unit_reference

    y, residual, *weights = make_inputs(2, 4, 5, 5, 2, False)
    residual[1, 2, 3, 4] = float("nan")  # a NaN residual reaches one output element
    out = se_unit(y, residual, *weights, False)
    expected = se_unit_reference(y, residual, *weights, False)
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert int(torch.isnan(out).sum()) == 1
