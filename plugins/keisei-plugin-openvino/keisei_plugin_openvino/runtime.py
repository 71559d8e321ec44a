"""The compiled OpenVINO model a keisei module runs, and the forward wrapper that calls it.

The compiled model is the (private) eager module itself with one more forward wrapper
(:func:`keisei_core.compile.add_forward_wrapper`), not a wrapper module: its
``state_dict`` keys stay the eager model's, and the PPO methods of
:class:`keisei_core.ActorCriticMixin`, which call ``self(obs)``, run through OpenVINO.
Transforms applied before (``channels-last``) are inside the converted graph.

The OpenVINO model holds a copy of the weights taken at conversion. So that it never
gives silently old answers, each call compares the parameters' and buffers' storage and
version counters with those it was built from (microseconds); when they moved, the
weights are hashed again: equal values (the same state_dict loaded again) are accepted,
different ones find (or build) the IR for the new weights, as ``aot-inductor`` does.

Large batches: a second compiled model with the ``THROUGHPUT`` hint (several streams,
each with part of the threads) runs a batch of at least ``PARALLEL_MIN_ROWS`` rows per
request split into ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` chunks in parallel, as OpenVINO's
own benchmark does; smaller batches run one request of the ``LATENCY`` model. Measured on
a 2-core Intel Xeon with AMX (docs/compilation.md, the peer table): the split gained
1.1-1.2x over one latency request at batch 64 and 256 and lost at batch 1. The call stays
synchronous, and validation covers both paths (declared sizes and the off-bucket 33).

Declared batch sizes: the caller's declared sizes below that split (``context.batch_sizes``,
at most ``STATIC_MAX``; the acting batch 1 above all) also get a model compiled for that
static shape, which the CPU plugin runs 3-10 % faster than the dynamic-batch one at batch 1
(measured, Intel Xeon with AMX); other sizes run the dynamic one.

Precision: OpenVINO's CPU plugin computes in bfloat16 by default on CPUs with native
bf16 (AVX512_BF16 or AMX), whatever the model's dtype. ``openvino`` therefore sets
``INFERENCE_PRECISION_HINT=f32`` explicitly; ``openvino-bf16`` sets ``bf16``.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.plugin import (
    ForwardWrapper,
    StrategyContext,
    check_eval_mode,
    check_exported_input,
    weights_fingerprint,
    weights_hash,
)
from keisei_plugin_openvino.convert import (
    IrPaths,
    convert_timed,
    ir_key,
    load_cached,
    recorded_convert_seconds,
    store,
)
from keisei_plugin_openvino.errors import InferenceOnlyError, OpenVinoInputError

Fingerprint = tuple[tuple[int, int], ...]  # what keisei_core's weights_fingerprint returns


# A batch is split over parallel requests from this many rows per request on (the split
# lost at batch 1 and gained at 64 and 256 in the measured peer table).
PARALLEL_MIN_ROWS = 16
STATIC_MAX = 4  # declared batch sizes compiled for their static shape, at most


def compile_config(precision_hint: str, threads: int, hint: str = "LATENCY") -> dict[str, str]:
    """The CPU plugin properties the strategies compile with (also recorded in the report).

    LATENCY: one stream, one request at a time, which is how a keisei model is called
    (synchronously, one batch per call); THROUGHPUT: the model large batches are split
    over (see the module docstring). The thread count is torch's, for fair timings."""
    return {
        "PERFORMANCE_HINT": hint,
        "INFERENCE_PRECISION_HINT": precision_hint,
        "INFERENCE_NUM_THREADS": str(threads),
    }


class OpenVinoRunner:
    """The OpenVINO model a module runs, and how to find or build it again for new weights."""

    def __init__(
        self,
        context: StrategyContext,
        strategy: str,
        precision_hint: str,
        observation: tuple[int, int, int],
        wrappers: tuple[ForwardWrapper, ...],
        example: torch.Tensor,
        threads: int,
    ) -> None:
        # What a rebuild needs, not the caller's notes or its (maybe large) example.
        self.context = attrs.evolve(context, notes={}, example_obs=None)
        self.strategy = strategy
        self.precision_hint = precision_hint
        self.observation = observation
        self.wrappers = wrappers  # the transforms inside the converted graph
        self.example = example.detach().clone()
        self.threads = threads
        self.config = compile_config(precision_hint, threads)
        self.compiled: Any = None
        self.request: Any = None
        self.parallel_config = compile_config(precision_hint, threads, "THROUGHPUT")
        self.parallel: Any = None  # the THROUGHPUT model, when it has more than one request
        self.parallel_requests: list[Any] = []
        self.static_models: dict[int, Any] = {}  # declared batch size -> its static-shape model
        self.static_requests: dict[int, Any] = {}
        self.paths: IrPaths | None = None
        self.weights: str | None = None
        self.fingerprint: Fingerprint | None = None
        self.exporting = False
        self.conversions = 0
        self.facts: dict[str, Any] = {}

    def __repr__(self) -> str:  # stable: wrapper names enter artifact keys
        return f"OpenVinoRunner({self.strategy}, {self.precision_hint})"

    # -- building --------------------------------------------------------------------------
    def key_extra(self) -> dict[str, Any]:
        """What else decides the IR's bytes, for the cache key (a subclass's quantizer)."""
        return {}

    def ensure(self, module: nn.Module) -> bool:
        """Load (or convert and store) the IR for the module's current weights and compile
        it. Returns whether a cached IR was reused; what happened goes into ``facts``."""
        import openvino as ov

        key = ir_key(module, self.context, self.strategy, self.wrappers, self.observation, **self.key_extra())
        paths = IrPaths.for_key(self.context, self.strategy, key)
        converted, why = load_cached(paths, key)
        facts: dict[str, Any] = {"artifact": str(paths.xml)}
        if converted is None:
            converted, seconds = self._convert(module)
            self.conversions += 1
            facts["cache_miss_reason"] = why
            facts["convert_seconds"] = round(seconds, 4)
            write_error = store(converted, paths, key, label=self._label(module), seconds=seconds)
            if write_error is not None:
                facts["cache_write_error"] = write_error
                facts["artifact"] = None
        else:
            recorded = recorded_convert_seconds(paths)  # the cold conversion's cost, kept
            facts["convert_seconds"] = round(recorded, 4) if recorded is not None else None
        start = time.perf_counter()
        core = ov.Core()
        self.compiled = core.compile_model(converted, "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        parallel = core.compile_model(converted, "CPU", self.parallel_config)
        count = int(parallel.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.parallel = parallel if count > 1 else None
        self._make_parallel_requests(count)
        self.static_models = self._compile_static(core, converted)
        self._make_static_requests()
        facts["openvino_compile_seconds"] = round(time.perf_counter() - start, 4)
        facts["static_batch_sizes"] = sorted(self.static_models)
        facts["parallel_requests"] = len(self.parallel_requests)
        facts["parallel_min_batch"] = self.parallel_min_batch
        facts["warm_start"] = why == "ok"
        self.paths = paths
        self.weights = weights_hash(module)
        self.fingerprint = weights_fingerprint(module)
        self.facts = facts
        return why == "ok"

    def _convert(self, module: nn.Module) -> tuple[Any, float]:
        was_training = module.training
        module.eval()
        self.exporting = True  # the wrapper steps aside while torch.export traces
        try:
            return convert_timed(module, self.example, self.observation, self._label(module))
        finally:
            self.exporting = False
            module.train(was_training)

    def _label(self, module: nn.Module) -> str:
        return str(getattr(module, "keisei_model_name", None) or type(module).__name__)

    # -- calling ---------------------------------------------------------------------------
    def check_weights(self, module: nn.Module) -> None:
        current = weights_fingerprint(module)
        if current == self.fingerprint and self.compiled is not None:
            return
        if self.compiled is not None and weights_hash(module) == self.weights:
            self.fingerprint = current
            return
        self.ensure(module)  # new weights (or an unpickled copy): their own IR

    @property
    def parallel_min_batch(self) -> int | None:
        """The smallest batch that is split over parallel requests (None: never)."""
        return PARALLEL_MIN_ROWS * len(self.parallel_requests) if self.parallel_requests else None

    def _compile_static(self, core: Any, converted: Any) -> dict[int, Any]:
        smallest = self.parallel_min_batch
        sizes = sorted({size for size in self.context.batch_sizes if smallest is None or size < smallest})
        models: dict[int, Any] = {}
        for size in sizes[:STATIC_MAX]:
            shaped = converted.clone()
            shaped.reshape([size, *self.observation])
            models[size] = core.compile_model(shaped, "CPU", self.config)
        return models

    def _make_static_requests(self) -> None:
        self.static_requests = {size: model.create_infer_request() for size, model in self.static_models.items()}

    def _make_parallel_requests(self, count: int) -> None:
        self.parallel_requests = [self.parallel.create_infer_request() for _ in range(count)] if self.parallel else []

    def run(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        array = obs.detach().contiguous().numpy()
        smallest = self.parallel_min_batch
        if smallest is not None and array.shape[0] >= smallest:
            return self._run_parallel(array)
        request = self.static_requests.get(array.shape[0], self.request)
        # share_outputs=False: the request reuses its output buffers on the next call.
        results = request.infer([array], share_inputs=True, share_outputs=False)
        # (logits, value) and, for a multi-head model, its extra heads (convert checks the count).
        return tuple(torch.from_numpy(output) for output in results.to_tuple())

    def _run_parallel(self, array: Any) -> tuple[torch.Tensor, ...]:
        import numpy as np

        chunks = np.array_split(array, len(self.parallel_requests))  # contiguous row blocks
        for request, chunk in zip(self.parallel_requests, chunks, strict=True):
            request.start_async([chunk], share_inputs=True)
        parts: list[tuple[Any, ...]] = []
        for request in self.parallel_requests:
            request.wait()
            parts.append(tuple(output.data.copy() for output in request.output_tensors))
        return tuple(torch.from_numpy(np.concatenate(heads)) for heads in zip(*parts, strict=True))

    # -- copies ----------------------------------------------------------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> OpenVinoRunner:
        # The compiled model is shared (read-only; requests are per copy); the copy's
        # weights are verified against it on its first call.
        twin = type(self).__new__(type(self))  # a subclass (openvino-int8) stays itself
        twin.__dict__.update(self.__dict__)  # not copy.copy: that goes through __getstate__
        twin.example = self.example.clone()
        twin.context = copy.deepcopy(self.context, memo)
        twin.facts = dict(self.facts)
        twin.fingerprint = None
        twin.request = self.compiled.create_infer_request() if self.compiled is not None else None
        twin._make_parallel_requests(len(self.parallel_requests))  # requests are per copy
        twin._make_static_requests()
        return twin

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["compiled"] = state["request"] = state["parallel"] = None  # rebuilt from the disk cache on first call
        state["parallel_requests"] = []
        state["static_models"], state["static_requests"] = {}, {}
        state["fingerprint"] = None
        return state


def openvino_forward(
    module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, runner: OpenVinoRunner, **kwargs: Any
) -> Any:
    if runner.exporting:  # torch.export is tracing the eager forward underneath
        return inner(obs, *args, **kwargs)
    check_eval_mode(module, runner.strategy, error=InferenceOnlyError)
    if args or kwargs:
        raise OpenVinoInputError(f"a '{runner.strategy}' model takes the observations only")
    check_exported_input(obs, runner.observation, runtime="openvino model", error=OpenVinoInputError)
    runner.check_weights(module)
    return runner.run(obs)
