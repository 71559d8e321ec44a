"""``compile_model``: apply a (composed) strategy, validate it against eager, fall back if needed."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from keisei_core.compile.composition import Composition, build_composition, parse_composition
from keisei_core.compile.counters import CounterSnapshot, warm_from_cache
from keisei_core.compile.equivalence import (
    has_active_dropout,
    make_check_inputs,
    preserved_state,
    run_checks,
)
from keisei_core.compile.inplace import compiled_call
from keisei_core.compile.policy_checks import (
    PolicyCheck,
    PolicyThresholds,
    is_quantized,
    resolve_policy_thresholds,
    run_policy_checks,
)
from keisei_core.compile.report import (
    CompileFailedError,
    CompileReport,
    EquivalenceCheck,
    SpeedCheck,
)
from keisei_core.compile.speed import compare_speed
from keisei_core.compile.tolerances import Tolerances, resolve_tolerance
from keisei_core.errors import InputError, KeiseiError
from keisei_core.introspect import model_shapes
from keisei_core.observations import make_observations
from keisei_core.specs import StrategyContext, StrategySpec

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 8, 64)
"""Batch 1 (rollouts), 8 and 64 (PPO minibatches): one batch size in each of the
shape buckets compilers specialise on (1, 2-15, 16+), so every compiled graph the model
will use is validated, not only the first."""

GUARDS = (None, "faster")


class _Failure(Exception):
    """Internal: why a strategy is rejected (one line)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _model_place(model: nn.Module) -> tuple[str, str]:
    tensor: torch.Tensor | None = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    if tensor is None:
        return "cpu", "float32"
    return tensor.device.type, _dtype_name(tensor.dtype)


def resolve_strategy(strategy: str | StrategySpec | Composition, host: Any = None) -> Composition:
    """A Composition from a name (``"channels-last+inductor"``), a spec or a composition."""
    if isinstance(strategy, Composition):
        return strategy
    if isinstance(strategy, StrategySpec):
        return build_composition([strategy])
    if isinstance(strategy, str):
        if host is None:
            from keisei_core.plugins import get_host

            host = get_host()
        return parse_composition(strategy, host.strategies)
    raise InputError(f"strategy must be a name, a StrategySpec or a Composition, got {type(strategy).__name__}")


def _check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise InputError(f"batch_sizes must be integers >= 1, got {list(sizes)}")
    return tuple(dict.fromkeys(sizes))


def _cuda_missing(device: str) -> str | None:
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    return None


def compile_model(
    model: nn.Module,
    strategy: str | StrategySpec | Composition,
    *,
    example_obs: torch.Tensor | None = None,
    fallback: bool = True,
    guard: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    tolerances: Tolerances = None,
    training: bool | None = None,
    host: Any = None,
    seed: int = 0,
    guard_seconds: float = 4.0,
    policy_thresholds: PolicyThresholds | None = None,
) -> tuple[nn.Module, CompileReport]:
    """Apply ``strategy`` to a private copy of ``model`` and validate it against eager.

    Returns ``(model, report)``: the compiled model when every equivalence check passed
    (and, with ``guard="faster"``, it was faster than eager at the largest batch size),
    else the eager model with the reason in the report -- or, with ``fallback=False``,
    raises :class:`CompileFailedError` carrying the report. A strategy that does not
    support ``device``/``dtype`` (or training, when ``training=True``) is ``skipped``.

    ``device``/``dtype`` default to where ``model``'s parameters are; when given and
    different, the model is copied there first (``model`` itself is never modified).
    ``training``: None validates train mode whenever the strategy supports training,
    True demands training support, False validates eval mode only. ``example_obs``
    gives the observation shape for models that do not declare one and is handed to the
    strategies (exporters trace with it). ``tolerances``: one :class:`Tolerance` or a
    mapping dtype -> Tolerance (see :mod:`keisei_core.compile.tolerances`). Quantized
    strategies (``precision="int8"``) are judged by policy-level checks instead
    (:mod:`keisei_core.compile.policy_checks`; ``policy_thresholds`` overrides the default).
    """
    started = time.perf_counter()
    composition = resolve_strategy(strategy, host)
    if guard not in GUARDS:
        raise InputError(f"guard must be None or 'faster', got {guard!r}")
    sizes = _check_batch_sizes(batch_sizes)
    own_device, own_dtype = _model_place(model)
    device = device or own_device
    dtype = dtype or own_dtype
    precision = composition.precision or dtype
    quantized = is_quantized(precision)
    tolerance = None if quantized else resolve_tolerance(precision, tolerances)
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}")

    base: dict[str, Any] = {
        "strategy": composition.name,
        "model": getattr(model, "keisei_model_name", None),
        "model_options": dict(getattr(model, "keisei_model_options", None) or {}),
        "device": device,
        "dtype": dtype,
        "precision": precision,
        "batch_sizes": sizes,
        "tolerance": tolerance,
        "torch_version": torch.__version__,
    }
    if quantized:
        base["policy_thresholds"] = resolve_policy_thresholds(precision, policy_thresholds)
    reason = composition.unsupported_reason(device, dtype, training=bool(training)) or _cuda_missing(device)
    if reason is not None:
        report = CompileReport(status="skipped", reason=reason, total_seconds=time.perf_counter() - started, **base)
        return model, report

    eager = model
    if (device, dtype) != (own_device, own_dtype):
        eager = copy.deepcopy(model).to(device=device, dtype=torch_dtype)
    shape = _observation_shape(eager, example_obs)
    num_actions = _num_actions(eager, shape, device, torch_dtype)

    notes: dict[str, Any] = {}
    modes: tuple[str, ...] = ("eval",)
    validate_train = composition.training if training is None else training
    if validate_train:
        if has_active_dropout(eager):
            notes["train_mode_not_validated"] = "the model has active dropout: train-mode outputs are random"
        else:
            modes = ("eval", "train")
    base["modes"] = modes

    inputs = make_check_inputs(sizes, shape, num_actions, device=device, dtype=torch_dtype, seed=seed)
    context = StrategyContext(
        device=device,
        dtype=dtype,
        example_obs=example_obs if example_obs is not None else inputs[-1].obs,
        batch_sizes=sizes,
        training="train" in modes,
        model_name=base["model"],
        model_options=base["model_options"],
        composition=composition.names,
    )
    context.notes.update(notes)

    before = CounterSnapshot.take()
    stage = "applying"
    compile_seconds: float | None = None
    validation_seconds: float | None = None
    graphs_first = 0
    checks: list[EquivalenceCheck] = []
    policy: list[PolicyCheck] = []
    speed: SpeedCheck | None = None
    candidate: nn.Module | None = None
    failure: str | None = None
    try:
        apply_start = time.perf_counter()
        candidate = copy.deepcopy(eager)
        expected_keys = list(eager.state_dict().keys())
        for part in composition.parts:
            stage = f"applying '{part.name}'"
            candidate = part.apply(candidate, context)
            _check_contract(part.name, candidate, expected_keys)
        stage = "the first call"
        with torch.no_grad():
            candidate.eval()
            candidate(inputs[0].obs)
        if inputs[0].obs.device.type == "cuda":
            torch.cuda.synchronize()
        compile_seconds = time.perf_counter() - apply_start
        graphs_first = CounterSnapshot.take().since(before).graphs

        stage = "validation"
        validation_start = time.perf_counter()
        if quantized:
            policy = run_policy_checks(
                eager, candidate, inputs, precision=precision, thresholds=base["policy_thresholds"], seed=seed
            )
        else:
            assert tolerance is not None
            checks = run_checks(
                eager, candidate, inputs, modes=modes, precision=precision, tolerance=tolerance,
                referee=precision == dtype,
            )
        validation_seconds = time.perf_counter() - validation_start
        bad = [c for c in checks if not c.passed]
        if bad:
            raise _Failure(f"{len(bad)} of {len(checks)} checks differ from eager; first: {bad[0].describe()}")
        missed = [c for c in policy if not c.passed]
        if missed:
            raise _Failure(
                f"{len(missed)} of {len(policy)} policy checks miss the {precision} thresholds; first: {missed[0].describe()}"
            )
        if guard == "faster":
            stage = "timing"
            speed = compare_speed(eager, candidate, inputs[-1].obs, budget_seconds=guard_seconds)
            if not speed.faster:
                raise _Failure(
                    f"not faster than eager at batch {speed.batch_size}: "
                    f"{speed.compiled_ms:.3g} ms vs eager {speed.eager_ms:.3g} ms (median of {speed.samples})"
                )
    except _Failure as exc:
        failure = str(exc)
    except KeiseiError as exc:
        failure = f"{stage} raised {_one_line(exc)}"
    except Exception as exc:  # any compiler error is a reason to fall back, never a crash
        failure = f"{stage} raised {_one_line(exc)}"

    counted = CounterSnapshot.take().since(before)
    call = compiled_call(candidate) if candidate is not None else None
    graphs = max(counted.graphs, call.graph_count() if call is not None else 0)
    warm = context.notes.pop("warm_start", None)
    if warm is None:
        warm = warm_from_cache(counted.cache)
    status = "compiled" if failure is None else ("fallback" if fallback else "failed")
    report = CompileReport(
        status=status,
        reason=failure,
        compile_seconds=compile_seconds,
        validation_seconds=validation_seconds,
        total_seconds=time.perf_counter() - started,
        warm_start=warm if isinstance(warm, bool) else None,
        cache={k: v for k, v in counted.cache.items() if v},
        graphs=graphs,
        recompiles=max(0, graphs - max(graphs_first, 1)),
        checks=tuple(checks),
        policy_checks=tuple(policy),
        speed=speed,
        notes=_plain(context.notes),
        **base,
    )
    if failure is not None:
        if not fallback:
            raise CompileFailedError(report)
        return eager, report
    assert candidate is not None
    candidate.train(model.training and composition.training)
    return candidate, report


def _num_actions(model: nn.Module, shape: tuple[int, int, int], device: str, dtype: torch.dtype) -> int:
    # Asking the model is the one answer that holds for every model, declared or not.
    obs = make_observations(1, shape[0], shape[1], device=device, dtype=dtype)
    with preserved_state(model), torch.no_grad():
        model.eval()
        logits = model(obs)[0]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise InputError(f"{type(model).__name__}.forward must return (logits (B, A), value (B,))")
    return int(logits.shape[1])


def _observation_shape(model: nn.Module, example_obs: torch.Tensor | None) -> tuple[int, int, int]:
    if example_obs is not None:
        if not isinstance(example_obs, torch.Tensor) or example_obs.dim() != 4:
            raise InputError("example_obs must be a 4-D tensor (B, C, H, W)")
        channels, height, width = (int(s) for s in example_obs.shape[1:])
        if height != width:
            raise InputError(f"example_obs boards must be square, got {height} x {width}")
        return channels, height, width
    return model_shapes(model).observation


def _check_contract(name: str, candidate: Any, expected_keys: list[str]) -> None:
    if not isinstance(candidate, nn.Module):
        raise _Failure(f"strategy '{name}' returned {type(candidate).__name__}, not an nn.Module")
    for method in ("get_action_and_value", "evaluate_actions"):
        if not callable(getattr(candidate, method, None)):
            raise _Failure(f"strategy '{name}' returned a module without {method}()")
    keys = list(candidate.state_dict().keys())
    if keys != expected_keys:
        missing = [k for k in expected_keys if k not in keys][:3]
        extra = [k for k in keys if k not in expected_keys][:3]
        raise _Failure(
            f"strategy '{name}' changed the state_dict keys (missing {missing}, unexpected {extra}); "
            "compiled and eager checkpoints must load into each other"
        )


def _plain(notes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in notes.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[str(key)] = value
        elif isinstance(value, list | tuple):
            out[str(key)] = [v if isinstance(v, bool | int | float | str) else str(v) for v in value]
        else:
            out[str(key)] = str(value)
    return out
