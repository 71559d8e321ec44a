"""The CPU op's output buffer pool: released outputs are reused, live ones never are, the
idle-memory limit holds, and tensors that leave the pool's hands (views, shared memory,
resize_) keep their values."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from keisei_plugin_fused_se.buffer_pool import (
    LIMIT_ENV,
    buffer_pool_stats,
    limit_from_environment,
    release_buffer_pool,
    set_buffer_pool_limit,
)
from keisei_plugin_fused_se.errors import FusedSEError
from keisei_plugin_fused_se.ops import se_unit
from keisei_plugin_fused_se.reference import se_unit_reference
from keisei_plugin_fused_se.testing import make_inputs

# 16 x 256 x 9 x 9 float32 = 1.3 MB: above the pool's 1 MiB threshold.
POOLED_SHAPE = (16, 256, 9, 9, 64)


@pytest.fixture(autouse=True)
def default_limit() -> Iterator[None]:
    limit = buffer_pool_stats().limit_bytes
    yield
    set_buffer_pool_limit(limit)


def pooled_inputs(seed: int = 0, film: bool = False) -> list[torch.Tensor]:
    return make_inputs(*POOLED_SHAPE, film, seed=seed)


def fused(inputs: list[torch.Tensor], film: bool = False) -> torch.Tensor:
    return se_unit(*inputs, film)


def test_a_released_output_is_reused() -> None:
    inputs = pooled_inputs()
    first = fused(inputs)
    address = first.data_ptr()
    del first
    before = buffer_pool_stats()
    second = fused(inputs)
    after = buffer_pool_stats()
    assert second.data_ptr() == address
    assert after.hits == before.hits + 1
    torch.testing.assert_close(second, se_unit_reference(*inputs, False), rtol=1e-5, atol=1e-5)


def test_live_outputs_and_their_views_are_never_reused() -> None:
    kept = fused(pooled_inputs(seed=1))
    kept_values = kept.clone()
    view = fused(pooled_inputs(seed=2))[3]  # only a view of the second output survives
    view_values = view.clone()
    others = [fused(pooled_inputs(seed=3 + i)) for i in range(3)]
    addresses = {t.untyped_storage().data_ptr() for t in (kept, view, *others)}
    assert len(addresses) == 5
    assert torch.equal(kept, kept_values)
    assert torch.equal(view, view_values)


def test_backward_gradients_come_from_the_pool_too() -> None:
    inputs = [t.requires_grad_(True) for t in pooled_inputs(seed=4)]
    grad = torch.randn(inputs[0].shape)

    def step() -> tuple[torch.Tensor, ...]:
        out = torch.ops.keisei_fused_se.se_unit_cpu(*inputs, False)
        return torch.autograd.grad(out, inputs, grad)

    expected = step()
    before = buffer_pool_stats()
    got = step()
    after = buffer_pool_stats()
    assert after.hits - before.hits == 3  # the output and both activation gradients
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_the_limit_bounds_idle_memory() -> None:
    inputs = pooled_inputs()
    set_buffer_pool_limit(0)
    assert buffer_pool_stats().idle_bytes == 0
    out = fused(inputs)
    del out
    assert buffer_pool_stats().idle_bytes == 0  # freed at once
    nbytes = inputs[0].nbytes
    set_buffer_pool_limit(2 * nbytes)
    outs = [fused(inputs) for _ in range(4)]
    del outs
    stats = buffer_pool_stats()
    assert stats.idle_blocks == 2 and stats.idle_bytes == 2 * nbytes
    assert release_buffer_pool() == 2 * nbytes
    assert buffer_pool_stats().idle_bytes == 0


def test_small_outputs_bypass_the_pool() -> None:
    inputs = make_inputs(1, 256, 9, 9, 64, False)  # 83 KB
    before = buffer_pool_stats()
    for _ in range(3):
        fused(inputs)
    after = buffer_pool_stats()
    assert (after.hits, after.misses) == (before.hits, before.misses)


def test_shared_memory_and_resize_keep_values() -> None:
    inputs = pooled_inputs(seed=5)
    shared = fused(inputs)
    expected = shared.clone()
    shared.share_memory_()  # moves the data to shared memory; the pooled block goes back
    assert shared.is_shared()
    resized = fused(inputs)
    resized.resize_(2 * resized.numel())  # reallocates through the pool's allocator
    fused(pooled_inputs(seed=6))  # may reuse either released block
    assert torch.equal(shared, expected)
    assert torch.equal(resized[: expected.numel()].view_as(expected), expected)


def test_concurrent_calls_do_not_share_outputs() -> None:
    cases = [pooled_inputs(seed=10 + i) for i in range(4)]
    expected = [fused(inputs).clone() for inputs in cases]
    failures: list[str] = []

    def worker(index: int) -> None:
        for _ in range(15):
            out = fused(cases[index])
            if not torch.equal(out, expected[index]):
                failures.append(f"thread {index}: output differs")
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_limit_from_environment() -> None:
    assert limit_from_environment({}) is None
    assert limit_from_environment({LIMIT_ENV: "0"}) == 0
    assert limit_from_environment({LIMIT_ENV: " 64 "}) == 64 << 20
    for bad in ("-1", "1.5", "lots"):
        with pytest.raises(FusedSEError, match=LIMIT_ENV):
            limit_from_environment({LIMIT_ENV: bad})


def test_bad_limits_are_refused() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="buffer pool limit"):
            set_buffer_pool_limit(bad)  # type: ignore[arg-type]


def test_the_environment_sets_the_limit_at_import(subprocess_checks) -> None:  # type: ignore[no-untyped-def]
    code, output = subprocess_checks.result("pool-env")
    assert code == 0, output


def test_a_bad_environment_value_fails_the_import_in_one_line(subprocess_checks) -> None:  # type: ignore[no-untyped-def]
    code, output = subprocess_checks.result("pool-env-bad")
    assert code == 0, output
