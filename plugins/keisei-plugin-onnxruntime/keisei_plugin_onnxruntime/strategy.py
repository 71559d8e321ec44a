"""``apply`` of the ``onnxruntime`` strategy: export (or reuse the cached export), open a
CPU session, and route the module's forward through it.

Notes recorded in the compile report (``context.record``): ``warm_start``, ``artifact``
(the .onnx path, or None when the cache could not be written), ``export_seconds`` (the
cold export's seconds, also on a warm start), ``session_seconds``, ``cache_miss_reason``,
``cache_write_error``, ``exporter``, ``opset``, ``intra_op_threads``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from keisei_core.plugin import (
    StrategyContext,
    check_exported_cell,
    export_example,
    exported_observation_shape,
    forward_wrappers,
    wrapper_name,
)
from keisei_plugin_onnxruntime.errors import InferenceOnlyError, OnnxStrategyError
from keisei_plugin_onnxruntime.export import (
    EXPORTER,
    Exported,
    ExportKey,
    export_and_store,
    load_cached,
    weights_digest,
)
from keisei_plugin_onnxruntime.runtime import OnnxForward, attach, make_session


def _check_cell(model: nn.Module, context: StrategyContext) -> None:
    check_exported_cell(
        "onnxruntime", model, context, error=OnnxStrategyError, inference_error=InferenceOnlyError,
        graph="an ONNX Runtime session",
    )


def _identity(model: nn.Module, context: StrategyContext) -> tuple[str, Mapping[str, Any]]:
    name = context.model_name or getattr(model, "keisei_model_name", None)
    options = context.model_options
    if options is None:
        options = getattr(model, "keisei_model_options", None) or {}
    cls = type(model)
    # The class path joins the name: two architectures never share a cache entry even
    # when they happen to have identical state_dicts.
    label = f"{name}@{cls.__module__}.{cls.__qualname__}" if name else f"{cls.__module__}.{cls.__qualname__}"
    return label, options


def _open_session(exported: Exported, threads: int) -> Any:
    source = exported.data if exported.data is not None else exported.path
    assert source is not None  # an Exported always has its bytes or its file
    return make_session(source, threads)


def apply_onnxruntime(model: nn.Module, context: StrategyContext) -> nn.Module:
    """Compile ``model`` (a private copy, changed in place) to an ONNX Runtime CPU session."""
    _check_cell(model, context)
    model.eval()
    shape = exported_observation_shape(model, context.example_obs, error=OnnxStrategyError)
    label, options = _identity(model, context)
    weights = weights_digest(model)
    recipe = (*context.composition, *(wrapper_name(w) for w in forward_wrappers(model)))
    key = ExportKey(label=label, options=options, observation=shape, weights=weights, recipe=recipe)
    threads = torch.get_num_threads()

    exported, miss_reason = load_cached(key, context.cache_dir)
    session = None
    if exported is not None:
        start = time.perf_counter()
        try:
            session = _open_session(exported, threads)
        except Exception as exc:  # loadable bytes the runtime still rejects: rebuild
            exported, miss_reason = None, f"cached export rejected by onnxruntime ({type(exc).__name__})"
        session_seconds = time.perf_counter() - start
    warm = exported is not None
    if exported is None:
        exported, write_error = export_and_store(
            model, export_example(context.example_obs, shape, error=OnnxStrategyError), key, context.cache_dir
        )
        context.record("cache_miss_reason", miss_reason)
        if write_error is not None:
            context.record("cache_write_error", write_error)
        start = time.perf_counter()
        session = _open_session(exported, threads)
        session_seconds = time.perf_counter() - start

    attach(model, OnnxForward(model, session, shape, weights, weights_digest))
    context.record("warm_start", warm)
    context.record("artifact", str(exported.path) if exported.path is not None else None)
    context.record("export_seconds", round(exported.export_seconds, 4))
    context.record("session_seconds", round(session_seconds, 4))
    context.record("exporter", EXPORTER)
    context.record("opset", exported.opset)
    context.record("intra_op_threads", threads)
    return model
