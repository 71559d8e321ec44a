"""The ``se-op`` probe: the SE unit alone, at the shapes it has inside the cell's model.

It runs the eager model once to capture the first SE unit's real inputs (B, C, H, W),
then times three private copies of that unit, interleaved: the eager op sequence, the
sequence compiled by torch.compile, and the fused operator; forward (no grad) and a
training step (forward + backward to inputs and weights).

Headline: the fused op's forward speedup over the eager sequence (median of per-round
ratios). ``extra`` holds the medians in µs of every form in both modes, the speedups
over the compiled sequence, first-call (compile) seconds, minor page faults per call of
each form (counted after the timing) and the fused-vs-eager output difference. The
measurement does not depend on the cell's strategy (it builds its own
forms), so it runs once per (model, batch size, device, dtype) in a run and other
strategies' cells reuse it, saying so in ``extra``.
"""

from __future__ import annotations

import json
from typing import Any

from keisei_core.plugin import ProbeContext, ProbeResult, ProbeUnsupported, paired_ratio


def _cache_key(context: ProbeContext) -> str:
    options = json.dumps(context.model_options, sort_keys=True, default=str)
    return f"se-op|{context.model_name}|{options}|{context.batch_size}|{context.device}|{context.dtype}"


def run_se_op(context: ProbeContext) -> ProbeResult:
    import torch

    from keisei_plugin_fused_se import unit_timing
    from keisei_plugin_fused_se.errors import KernelNotBuiltError
    from keisei_plugin_fused_se.ops import cpu_kernel_isa, require_kernels

    try:
        require_kernels(context.device)
    except KernelNotBuiltError as exc:
        raise ProbeUnsupported(str(exc)) from None

    key = _cache_key(context)
    cached = context.run_cache.get(key)
    if isinstance(cached, ProbeResult):
        return ProbeResult(
            cached.metric, cached.unit, cached.value, cached.statistics,
            higher_is_better=True, extra={**cached.extra, "reused_for_strategy": context.strategy},
        )  # fmt: skip

    captured = unit_timing.capture_first_se_unit(context.eager_model, context.observations())
    if captured is None:
        raise ProbeUnsupported(f"model '{context.model_name}' has no fusable SE unit")
    y, residual = captured.y, captured.residual
    forms = unit_timing.make_forms(captured.unit)
    sync = context.synchronize if context.device == "cuda" else None

    forward = unit_timing.forward_calls(forms, y, residual)
    first_forward = unit_timing.first_calls(forward, sync)
    forward_times = context.time_interleaved(forward)
    forward_faults = unit_timing.page_faults_per_call(forward, sync=sync)
    train = unit_timing.train_calls(forms, y, residual, seed=context.seed)
    first_train = unit_timing.first_calls(train, sync)
    train_times = context.time_interleaved(train)
    train_faults = unit_timing.page_faults_per_call(train, sync=sync)

    headline = paired_ratio(forward_times["eager"], forward_times["fused"])
    extra: dict[str, Any] = {
        "unit": captured.name,
        "se_units_in_model": captured.units_in_model,
        "shape": list(y.shape),
        "hidden": captured.unit.hidden,
        "film": bool(captured.unit.film),
        "channels_last": bool(not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last)),
        "forward": unit_timing.summary(forward_times),
        "train": unit_timing.summary(train_times),
        "first_call_seconds": {"forward": first_forward, "train": first_train},
        "page_faults_per_call": {"forward": forward_faults, "train": train_faults},
        "max_abs_difference": unit_timing.max_difference(forms, y, residual),
        "cpu_isa": cpu_kernel_isa() if context.device == "cpu" else None,
        "measured_in_strategy": context.strategy,
    }
    result = ProbeResult("se-op", "x", headline.median, headline, higher_is_better=True, extra=extra)
    context.run_cache[key] = result
    return result
