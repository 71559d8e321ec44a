"""The ``peers`` probe: keisei's strategies against the runtimes a user would pick instead.

In one process, for the cell's batch size, it times forward passes (observations ->
policy logits and value) of

- ``eager``: the eager float32 model (``context.eager_model``), the baseline;
- keisei strategies (``strategies``): each compiled once per run by ``compile_model``
  (validated against eager, ``fallback=False``: a strategy that fails validation is a
  failed row, never eager timed under its name);
- peers (``peers``), called through their own APIs on one graph exported with
  ``torch.onnx`` (the ``onnxruntime`` plugin's exporter), not through keisei's wrappers:
  an ONNX Runtime ``InferenceSession`` (``onnxruntime-session``: CPU provider, all graph optimisations), and
  OpenVINO's CPU plugin with the ``LATENCY`` hint (one synchronous request) or the
  ``THROUGHPUT`` hint (the batch split over ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` requests
  of an ``AsyncInferQueue``), each with ``INFERENCE_PRECISION_HINT`` f32 or bf16, or
  (``-int8``) the model quantized by NNCF (``nncf.quantize``, the ``openvino-int8``
  strategy's calibration positions) with f32 for what stays float. OpenVINO peers get a
  static input shape per batch size (what its benchmark_app does).

Every row's first output is compared with eager's (``max_abs_diff``: a bf16 peer is not
float32, and the table says by how much). All rows that work are then timed interleaved
(``context.time_interleaved``: rounds in shuffled order, so machine drift hits each
alike); ``x_eager`` is the median of the per-round ratios eager / row. ``gflops`` is the
eager model's forward FLOPs (``flops`` probe's counter) per second, ``pct_of_peak`` that
over the machine's peak in the row's precision, measured with the ``peak`` probe's two
kernels (a large matmul, a tower-sized convolution; float32 and bfloat16) timed in the
same interleaved rounds, so the peak sees the same machine load as the rows (the run's
``peak`` calibration is recorded beside it). No int8 peak is measured, so int8 rows
leave it empty.

The headline value is the best keisei strategy's ``x_eager`` over the best peer's (above
1: keisei is ahead). ``extra["rows"]`` holds every row; ``keisei_plugin_openvino.peer_table``
prints them as markdown.

Options (``[probe_options.peers]``): see :mod:`keisei_plugin_openvino.options`.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from keisei_core.plugin import (
    ProbeContext,
    ProbeResult,
    ProbeUnsupported,
    calibrate_peak,
    forward_flops_per_sample,
    one_line,
)
from keisei_plugin_openvino.options import PeerOptions

CACHE_KEY = "peers"

Forward = Callable[[], Any]


def parse_options(raw: Mapping[str, Any]) -> PeerOptions:
    """The probe's options, structured by the core's converter: one line naming the bad key."""
    from keisei_core.plugin import structure_options as structure

    return structure(dict(raw), PeerOptions, "[probe_options.peers]")


@attrs.define
class Row:
    """One contender of a cell: what it is, and (after timing) how fast."""

    name: str
    kind: str  # eager | keisei | peer
    precision: str
    status: str = "ok"
    reason: str | None = None
    forward: Forward | None = None
    max_abs_diff: float | None = None
    facts: dict[str, Any] = attrs.field(factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "precision": self.precision, "status": self.status,
            "reason": self.reason, "max_abs_diff": self.max_abs_diff, **self.facts,
        }


# -- keisei strategies -------------------------------------------------------------------
def _keisei_model(context: ProbeContext, strategy: str, options: PeerOptions) -> tuple[Any, str, dict[str, Any]]:
    """(compiled model or None, precision, facts), compiled once per run and model."""
    cache = context.run_cache.setdefault(CACHE_KEY, {}).setdefault("keisei", {})
    key = (context.model_name, repr(sorted(context.model_options.items())), strategy)
    if key not in cache:
        cache[key] = _compile(context, strategy, options)
    return cache[key]


def _compile(context: ProbeContext, strategy: str, options: PeerOptions) -> tuple[Any, str, dict[str, Any]]:
    from keisei_core.plugin import (
        CompileFailedError,
        UnknownNameError,
        compile_model,
        get_host,
        native_precision_problem,
        resolve_strategy,
    )

    host = get_host()
    try:
        composition = resolve_strategy(strategy, host)  # parsed once, then handed to compile_model
    except UnknownNameError as exc:  # a part not installed: a skipped row, with the closest names
        return None, "-", {"status": "skipped", "reason": one_line(exc, with_type=False)}
    precision = composition.precision or "float32"
    emulated = native_precision_problem("cpu", precision)
    if emulated and not options.emulated_precisions:
        return None, precision, {"status": "skipped", "reason": f"{emulated}; set emulated_precisions = true to time it"}
    try:
        model, report = compile_model(
            context.eager_model, composition, example_obs=context.observations(max(options.validation_batch_sizes)),
            fallback=False, training=False, batch_sizes=tuple(options.validation_batch_sizes), host=host,
            seed=context.seed,
        )
    except CompileFailedError as exc:
        report = exc.report
        return None, report.precision or precision, {"status": "failed", "reason": report.reason}
    except Exception as exc:
        return None, precision, {"status": "failed", "reason": one_line(exc, limit=300)}
    if report.status != "compiled":
        return None, report.precision or precision, {"status": report.status, "reason": report.reason}
    if precision != "int8":
        precision = report.precision or precision
    model.eval()
    facts = {
        "compile_seconds": report.compile_seconds,
        "validation_seconds": report.validation_seconds,
        "warm_start": report.warm_start,
        "checks": len(report.checks),
    }
    return model, precision, {"status": "ok", "reason": None, **facts}


def _torch_forward(model: Any, obs: Any) -> Forward:
    import torch

    def forward() -> Any:
        with torch.no_grad():
            return model(obs)

    return forward


# -- peers -------------------------------------------------------------------------------
def _onnx_bytes(context: ProbeContext) -> bytes:
    """The eager model exported once per run with the onnxruntime plugin's exporter."""
    cache = context.run_cache.setdefault(CACHE_KEY, {}).setdefault("onnx", {})
    key = (context.model_name, repr(sorted(context.model_options.items())))
    if key not in cache:
        from keisei_plugin_onnxruntime.export import export_to_onnx

        from keisei_core.plugin import EXPORT_BATCH

        model = copy.deepcopy(context.eager_model).eval()
        data, _opset = export_to_onnx(model, context.observations(EXPORT_BATCH), context.model_name)
        cache[key] = data
    return bytes(cache[key])


def _onnxruntime_peer(context: ProbeContext, onnx: bytes, obs: Any) -> tuple[Forward, dict[str, Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = context.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    array = obs.numpy()

    def forward() -> Any:
        return session.run(None, {name: array})

    facts = {"api": "onnxruntime.InferenceSession(CPUExecutionProvider, ORT_ENABLE_ALL)",
             "intra_op_threads": context.threads, "onnxruntime_version": ort.__version__}
    return forward, facts


def _openvino_peer(
    context: ProbeContext, onnx: bytes, obs: Any, hint: str, precision: str
) -> tuple[Forward, dict[str, Any]]:
    import numpy as np
    import openvino as ov

    core = ov.Core()
    path = context.scratch_dir / "peer.onnx"
    path.write_bytes(onnx)
    batch = int(obs.shape[0])
    # int8: NNCF's quantized model; what it leaves in float computes in f32.
    config = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32" if precision == "int8" else precision,
              "INFERENCE_NUM_THREADS": str(context.threads)}
    array = obs.numpy()
    if hint == "LATENCY":
        model = _read_model(context, core, path, precision)
        model.reshape([batch, *array.shape[1:]])
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()

        def latency_forward() -> Any:
            # Outputs shared (not copied): the best a caller that reads them at once can do.
            return request.infer([array], share_inputs=True, share_outputs=True)

        facts = {"api": "openvino CompiledModel + InferRequest.infer", "config": _config_text(config),
                 "requests": 1, "streams": int(compiled.get_property("NUM_STREAMS")),
                 "inference_precision": _inference_precision(compiled)}
        return latency_forward, facts
    # THROUGHPUT: split the batch into one chunk per optimal request and run them in parallel.
    probe_model = _read_model(context, core, path, precision)
    probe_model.reshape([batch, *array.shape[1:]])
    requests = int(core.compile_model(probe_model, "CPU", config).get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    chunks = requests if requests > 1 and batch % requests == 0 else 1
    model = _read_model(context, core, path, precision)
    model.reshape([batch // chunks, *array.shape[1:]])
    compiled = core.compile_model(model, "CPU", config)
    queue = ov.AsyncInferQueue(compiled, chunks)
    parts = np.split(array, chunks)

    slots: list[Any] = [None] * chunks

    def collect(request: Any, index: int) -> None:
        # A request that finished first may be handed the next chunk: file outputs by chunk.
        slots[index] = (request.get_output_tensor(0).data.copy(), request.get_output_tensor(1).data.copy())

    queue.set_callback(collect)

    def throughput_forward() -> Any:
        for index, part in enumerate(parts):
            queue.start_async([part], userdata=index, share_inputs=True)
        queue.wait_all()
        return [np.concatenate([slot[k] for slot in slots]) for k in (0, 1)]

    facts = {"api": "openvino AsyncInferQueue", "config": _config_text(config), "requests": chunks,
             "optimal_requests": requests, "streams": int(compiled.get_property("NUM_STREAMS")),
             "inference_precision": _inference_precision(compiled)}
    return throughput_forward, facts


def _inference_precision(compiled: Any) -> str:
    """What the CPU plugin computes in: it ignores a bf16 hint on a CPU without bf16."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)


def _read_model(context: ProbeContext, core: Any, path: Any, precision: str) -> Any:
    """The peer's own copy of the exported model; for int8 quantized by NNCF once per run
    (on the dynamic-batch model, with keisei's ``openvino-int8`` calibration positions),
    as a user of OpenVINO's post-training quantization would."""
    if precision != "int8":
        return core.read_model(str(path))
    cache = context.run_cache.setdefault(CACHE_KEY, {}).setdefault("openvino-int8", {})
    key = (context.model_name, repr(sorted(context.model_options.items())))
    if key not in cache:
        from keisei_plugin_openvino.int8 import calibration_positions, quantize_model

        model = core.read_model(str(path))
        _, channels, height, width = (int(d) for d in context.observations(1).shape)
        model.reshape([-1, channels, height, width])
        cache[key] = quantize_model(model, calibration_positions((channels, height, width)))
    return cache[key].clone()


def _config_text(config: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _peer_row(context: ProbeContext, peer: str, obs: Any) -> Row:
    if peer == "onnxruntime-session":
        row = Row(peer, "peer", "float32")
    else:
        _, mode, hint = peer.split("-")
        row = Row(peer, "peer", {"f32": "float32", "bf16": "bfloat16", "int8": "int8"}[hint])
    try:
        onnx = _onnx_bytes(context)
        if peer == "onnxruntime-session":
            row.forward, row.facts = _onnxruntime_peer(context, onnx, obs)
        else:
            row.forward, row.facts = _openvino_peer(context, onnx, obs, mode.upper(), hint)
            if hint == "bf16" and row.facts.get("inference_precision") == "f32":
                # Labelled by what ran: its % of peak is then against the float32 peak.
                row.precision = "float32"
    except ImportError as exc:
        row.status, row.reason = "skipped", f"{exc.name or 'a module'} is not installed"
    except Exception as exc:
        row.status, row.reason = "failed", one_line(exc, limit=300)
    return row


# -- the probe ---------------------------------------------------------------------------
def _outputs(value: Any) -> tuple[Any, Any]:
    import numpy as np
    import torch

    first, second = (value[0], value[1]) if not hasattr(value, "to_tuple") else value.to_tuple()[:2]
    return (torch.as_tensor(np.asarray(first)).float(), torch.as_tensor(np.asarray(second)).float())


def _check_against(row: Row, reference: tuple[Any, Any]) -> None:
    """First call of the row; its largest difference from eager (logits and value)."""
    assert row.forward is not None
    try:
        logits, value = _outputs(row.forward())
        if tuple(logits.shape) != tuple(reference[0].shape) or tuple(value.reshape(-1).shape) != tuple(reference[1].reshape(-1).shape):
            raise ValueError(f"output shapes {tuple(logits.shape)}/{tuple(value.shape)} differ from eager's")
        diff = max(float((logits - reference[0]).abs().max()), float((value.reshape(-1) - reference[1].reshape(-1)).abs().max()))
        if not math.isfinite(diff):
            raise ValueError("non-finite outputs")
        row.max_abs_diff = diff
    except Exception as exc:
        row.status, row.reason, row.forward = "failed", f"first call: {one_line(exc, limit=300)}", None


def build_rows(context: ProbeContext, options: PeerOptions) -> list[Row]:
    obs = context.observations()
    rows = [Row("eager", "eager", "float32", forward=_torch_forward(context.eager_model, obs))]
    for strategy in options.strategies:
        model, precision, facts = _keisei_model(context, strategy, options)
        row = Row(strategy, "keisei", precision, status=facts["status"], reason=facts["reason"])
        row.facts = {k: v for k, v in facts.items() if k not in ("status", "reason")}
        if model is not None:
            row.forward = _torch_forward(model, obs)
        rows.append(row)
    rows.extend(_peer_row(context, peer, obs) for peer in options.peers)
    return rows


def _peak_precisions(options: PeerOptions) -> tuple[str, ...]:
    """float32, and bfloat16 where this CPU computes it natively (or the user asked)."""
    from keisei_core.plugin import native_precision_problem

    native_bf16 = options.emulated_precisions or native_precision_problem("cpu", "bfloat16") is None
    return ("float32", "bfloat16") if native_bf16 else ("float32",)


def _peak_kernels(context: ProbeContext, precisions: tuple[str, ...]) -> list[tuple[Row, Forward, float]]:
    """The ``peak`` probe's two kernels (a 1024^3 matmul, a tower-sized 3x3 convolution)
    per precision, timed in the same rounds as the contenders: a peak measured once at
    another moment of a shared machine is not the peak of these rounds."""
    import torch

    gen = torch.Generator().manual_seed(context.seed)
    kernels: list[tuple[Row, Forward, float]] = []
    for precision in precisions:
        dtype = getattr(torch, precision)
        a = torch.randn(1024, 1024, generator=gen).to(dtype)
        b = torch.randn(1024, 1024, generator=gen).to(dtype)
        conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(dtype)
        x = torch.randn(16, 256, 9, 9, generator=gen).to(dtype)
        kernels.append((Row(f"peak {precision} matmul 1024", "peak", precision), functools.partial(torch.matmul, a, b), 2.0 * 1024**3))
        kernels.append((
            Row(f"peak {precision} conv 256x3x3 (16x9x9)", "peak", precision),
            _torch_forward(conv, x), 2.0 * 16 * 81 * 256 * 256 * 9,
        ))
    return kernels


def _calibrated_peaks(context: ProbeContext, precisions: tuple[str, ...]) -> dict[str, float]:
    """The run's ``peak`` calibration per precision, recorded beside the in-round peak."""
    return {
        precision: float(calibrate_peak(attrs.evolve(context, dtype=precision))["peak_flops_per_second"])
        for precision in precisions
    }


def run_peers(context: ProbeContext) -> ProbeResult:
    if context.strategy != "eager" or context.device != "cpu" or context.dtype != "float32" or context.training:
        raise ProbeUnsupported(
            "peers runs in the eager float32 CPU inference cell (it compiles its own strategies); "
            "list strategies under [probe_options.peers]"
        )
    import torch

    options = parse_options(context.options)
    rows = build_rows(context, options)
    with torch.no_grad():
        reference = _outputs(context.eager_model(context.observations()))
    for row in rows[1:]:
        if row.forward is not None:
            _check_against(row, reference)
    rows[0].max_abs_diff = 0.0
    # Keyed by kind and name: a keisei strategy and a peer may share a name.
    live = {row.key: row.forward for row in rows if row.forward is not None}
    precisions = _peak_precisions(options)
    kernels = _peak_kernels(context, precisions)
    live.update({row.key: forward for row, forward, _ in kernels})
    timings = context.time_interleaved(live)  # type: ignore[arg-type]
    flops = forward_flops_per_sample(context) * context.batch_size
    # The peak of a precision: its faster kernel's fast tail (p10), as the peak probe does.
    peaks: dict[str, float] = {}
    for row, _, kernel_flops in kernels:
        achieved = kernel_flops / timings[row.key].p10
        row.facts = {"ms": timings[row.key].median * 1e3, "ms_q1": timings[row.key].q1 * 1e3,
                     "ms_q3": timings[row.key].q3 * 1e3, "gflops": achieved / 1e9, "gflops_at": "p10"}
        peaks[row.precision] = max(peaks.get(row.precision, 0.0), achieved)
    for row, _, _ in kernels:
        row.facts["pct_of_peak"] = 100.0 * row.facts["gflops"] * 1e9 / peaks[row.precision]
    eager = timings[rows[0].key]
    for row in rows:
        stats = timings.get(row.key)
        if stats is None:
            continue
        # Samples pair up by round (time_interleaved keeps every sample: n is equal).
        ratios = [e / s for e, s in zip(eager.samples, stats.samples, strict=True) if s > 0]
        peak = peaks.get(row.precision)
        row.facts.update({
            "ms": stats.median * 1e3,
            "ms_q1": stats.q1 * 1e3,
            "ms_q3": stats.q3 * 1e3,
            "samples": stats.n,
            "x_eager": _median(ratios),
            "gflops": flops / stats.median / 1e9,
            "pct_of_peak": 100.0 * flops / stats.median / peak if peak else None,
        })
        row.facts = {k: v for k, v in row.facts.items() if v is not None}
    ok = [r for r in rows if "x_eager" in r.facts]
    best_keisei = max((r for r in ok if r.kind == "keisei"), key=lambda r: r.facts["x_eager"], default=None)
    best_peer = max((r for r in ok if r.kind == "peer"), key=lambda r: r.facts["x_eager"], default=None)
    if best_keisei is None or best_peer is None:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in rows if r.reason)
        raise RuntimeError(f"peers needs at least one working keisei strategy and one peer ({reasons})")
    headline = best_keisei.facts["x_eager"] / best_peer.facts["x_eager"]
    return ProbeResult(
        "peers", "x", headline, None,
        extra={
            "measure": "best keisei x_eager / best peer x_eager (forward passes, interleaved)",
            "best_keisei": best_keisei.name,
            "best_peer": best_peer.name,
            "eager_ms": eager.median * 1e3,
            "forward_flop_per_batch": flops,
            "peak_flops_per_second": peaks,
            "peak_measure": "p10 of the peak kernels timed in the same interleaved rounds",
            "calibrated_peak_flops_per_second": _calibrated_peaks(context, precisions),
            "threads": context.threads,
            "stop_reason": eager.stop_reason,
            "rows": [row.to_dict() for row in [*rows, *(row for row, _, _ in kernels)]],
        },
    )


def _median(values: list[float]) -> float:
    from keisei_core.plugin import quantile

    return float(quantile(sorted(values), 0.5))
