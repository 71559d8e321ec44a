"""``compile_model``: apply a (composed) strategy, validate it against eager, fall back if needed."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from keisei_core.compile.composition import AUTO, Composition, build_composition, parse_composition
from keisei_core.compile.counters import CounterSnapshot, warm_from_cache
from keisei_core.compile.equivalence import (
    CheckInputs,
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
    Failure,
    SamplingCheck,
    SpeedCheck,
    WeightsCheck,
    policy_failure,
)
from keisei_core.compile.sampling import DEFAULT_DRAWS, check_sampling
from keisei_core.compile.speed import compare_speed
from keisei_core.compile.tolerances import Tolerances, resolve_tolerance
from keisei_core.compile.weights import check_weight_updates
from keisei_core.errors import InputError
from keisei_core.introspect import model_shapes
from keisei_core.json_data import json_safe
from keisei_core.observations import make_observations
from keisei_core.specs import StrategyContext, StrategySpec
from keisei_core.statuses import CompileStatus, FailureKind

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 8, 64)
"""Batch 1 (rollouts), 8 and 64 (PPO minibatches): one batch size in each of the
shape buckets compilers specialise on (1, 2-15, 16+), so every compiled graph the model
will use is validated, not only the first."""

OFF_BUCKET_BATCH_SIZES: tuple[int, ...] = (3, 33)
"""Validated besides the declared sizes: odd sizes, no power of two, in the 2-15 and 16+
buckets, so a strategy that is right only at the sizes it was told about is caught."""

SPEED_SECONDS = 1.0
"""Default time budget of the speed check per declared batch size (at least 3 pairs)."""

GUARDS = (None, "faster")


class _Failure(Exception):
    """Internal: why a strategy is rejected (one line, and as data)."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


def _one_line(exc: BaseException) -> str:
    from keisei_core.oneline import one_line

    return one_line(exc, limit=300)


def _dtype_name(dtype: torch.dtype) -> str:
    from keisei_core.dtypes import dtype_name

    return dtype_name(dtype)


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


def _cuda_missing(device: str) -> tuple[str, Failure] | None:
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine", Failure(FailureKind.UNSUPPORTED_DEVICE, check="cuda")
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
    speed_seconds: float = SPEED_SECONDS,
    extra_batch_sizes: Sequence[int] = OFF_BUCKET_BATCH_SIZES,
    sampling_draws: int = DEFAULT_DRAWS,
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
    (:mod:`keisei_core.compile.policy_checks`; ``policy_thresholds`` overrides the default);
    the sampling and weight-update checks below need a tolerance and do not run for them.

    ``batch_sizes`` are the sizes the model will run at (declared); validation also runs
    at ``extra_batch_sizes`` (off-bucket sizes). Besides the output comparisons, the
    stochastic path is sampled (``sampling_draws`` draws, :mod:`keisei_core.compile.sampling`),
    new weights are loaded and stepped (:mod:`keisei_core.compile.weights`), and eager
    and compiled are timed at each declared size for ``speed_seconds`` (``guard_seconds``
    with ``guard="faster"``, where "not faster" at any declared size means fallback;
    ``speed_seconds=0`` without a guard skips timing).

    ``strategy="auto"`` tunes instead: see :func:`keisei_core.compile.auto.compile_auto`.
    """
    if _is_auto(strategy):
        from keisei_core.compile.auto import compile_auto

        return compile_auto(
            model, batch_sizes=batch_sizes, example_obs=example_obs, device=device, dtype=dtype,
            tolerances=tolerances, host=host, seed=seed, extra_batch_sizes=extra_batch_sizes,
            sampling_draws=sampling_draws, speed_seconds=speed_seconds,
        )
    started = time.perf_counter()
    composition = resolve_strategy(strategy, host)
    if guard not in GUARDS:
        raise InputError(f"guard must be None or 'faster', got {guard!r}")
    if not speed_seconds >= 0 or not guard_seconds >= 0:
        raise InputError(f"speed_seconds and guard_seconds must be >= 0, got {speed_seconds} and {guard_seconds}")
    if isinstance(sampling_draws, bool) or not isinstance(sampling_draws, int) or sampling_draws < 1:
        raise InputError(f"sampling_draws must be an integer >= 1, got {sampling_draws!r}")
    declared = _check_batch_sizes(batch_sizes)
    extras = off_bucket_sizes(declared, _check_batch_sizes(extra_batch_sizes) if tuple(extra_batch_sizes) else ())
    sizes = (*declared, *extras)
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
        "declared_batch_sizes": declared,
        "tolerance": tolerance,
        "torch_version": torch.__version__,
        "frozen_weights": composition.frozen_weights,
    }
    if quantized:
        base["policy_thresholds"] = resolve_policy_thresholds(precision, policy_thresholds)
    unsupported = composition.unsupported(device, dtype, training=bool(training)) or _cuda_missing(device)
    if unsupported is not None:
        report = CompileReport(
            status=CompileStatus.SKIPPED, reason=unsupported[0], failure=unsupported[1],
            total_seconds=time.perf_counter() - started, **base,
        )
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
        batch_sizes=declared,
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
    speeds: list[SpeedCheck] = []
    sampling: SamplingCheck | None = None
    weights: list[WeightsCheck] = []
    speed_total: float | None = None
    stages: dict[str, float] = {}
    candidate: nn.Module | None = None
    failure: str | None = None
    failed: Failure | None = None
    part_name: str | None = None
    try:
        apply_start = time.perf_counter()
        candidate = copy.deepcopy(eager)
        expected_keys = list(eager.state_dict().keys())
        for part in composition.parts:
            stage, part_name = f"applying '{part.name}'", part.name
            candidate = part.apply(candidate, context)
            _check_contract(part.name, candidate, expected_keys)
        stage, part_name = "the first call", None
        with torch.no_grad():
            candidate.eval()
            candidate(inputs[0].obs)
        if inputs[0].obs.device.type == "cuda":
            torch.cuda.synchronize()
        compile_seconds = time.perf_counter() - apply_start
        graphs_first = CounterSnapshot.take().since(before).graphs

        stage = "validation"
        validation_start = time.perf_counter()
        eager_logits: dict[int, torch.Tensor] = {}
        if quantized:
            policy = run_policy_checks(
                eager, candidate, inputs, precision=precision, thresholds=base["policy_thresholds"], seed=seed
            )
        else:
            assert tolerance is not None
            checks = run_checks(
                eager, candidate, inputs, modes=modes, precision=precision, tolerance=tolerance,
                referee=precision == dtype, eager_logits=eager_logits,
            )
        stages["outputs"] = time.perf_counter() - validation_start
        bad = [c for c in checks if not c.passed]
        if bad:
            validation_seconds = time.perf_counter() - validation_start
            raise _Failure(
                f"{len(bad)} of {len(checks)} checks differ from eager; first: {bad[0].describe()}", bad[0].failure()
            )
        missed = [c for c in policy if not c.passed]
        if missed:
            validation_seconds = time.perf_counter() - validation_start
            raise _Failure(
                f"{len(missed)} of {len(policy)} policy checks miss the {precision} thresholds; "
                f"first: {missed[0].describe()}",
                policy_failure(missed[0]),
            )
        if tolerance is not None:
            stage = "sampling"
            accepted = [c.max_abs_diff for c in checks if c.mode == "eval" and c.output == "log_prob"]
            sampling = check_sampling(
                candidate, inputs, eager_logits, tolerance=tolerance, seed=seed, draws=sampling_draws,
                log_prob_slack=2 * max(accepted, default=0.0),
            )
        validation_seconds = time.perf_counter() - validation_start
        stages["sampling"] = validation_seconds - stages["outputs"]
        if sampling is not None and not sampling.passed:
            raise _Failure(sampling.describe(), sampling.failure())
        budget = guard_seconds if guard == "faster" else speed_seconds
        if budget > 0:
            stage = "timing"
            speed_start = time.perf_counter()
            by_size = {d.batch_size: d for d in inputs}
            for size in declared:
                speeds.append(compare_speed(
                    eager, candidate, by_size[size].obs, budget_seconds=budget,
                    min_samples=5 if guard == "faster" else 3, warmup_calls=2 if guard == "faster" else 1,
                ))
            speed_total = stages["speed"] = time.perf_counter() - speed_start
            slow = [s for s in speeds if not s.faster]
            if guard == "faster" and slow:
                s = slow[0]
                raise _Failure(
                    f"not faster than eager at batch {s.batch_size}: "
                    f"{s.compiled_ms:.3g} ms vs eager {s.eager_ms:.3g} ms (median of {s.samples})",
                    s.failure(),
                )
        if tolerance is not None:
            stage = "the weight-update check"
            weights_start = time.perf_counter()
            weights = check_weight_updates(
                eager, candidate, _weights_input(inputs), tolerance=tolerance,
                frozen=composition.frozen_weights, training="train" in modes, seed=seed,
                slack=2 * max((c.max_abs_diff for c in checks if c.mode == "eval" and c.method == "forward"),
                              default=0.0),
            )
            stages["weights"] = time.perf_counter() - weights_start
            validation_seconds += stages["weights"]
        stale = [w for w in weights if not w.passed]
        if stale:
            raise _Failure(stale[0].describe(), stale[0].failure())
    except _Failure as exc:
        failure, failed = str(exc), exc.failure
    except Exception as exc:  # any compiler error is a reason to fall back, never a crash
        failure, failed = f"{stage} raised {_one_line(exc)}", Failure.raised(stage, exc, strategy=part_name)

    counted = CounterSnapshot.take().since(before)
    call = compiled_call(candidate) if candidate is not None else None
    graphs = max(counted.graphs, call.graph_count() if call is not None else 0)
    warm = context.notes.pop("warm_start", None)
    if warm is None:
        warm = warm_from_cache(counted.cache)
    if failure is None:
        status = CompileStatus.COMPILED
    else:
        status = CompileStatus.FALLBACK if fallback else CompileStatus.FAILED
    report = CompileReport(
        status=status,
        reason=failure,
        failure=failed,
        compile_seconds=compile_seconds,
        validation_seconds=validation_seconds,
        total_seconds=time.perf_counter() - started,
        warm_start=warm if isinstance(warm, bool) else None,
        cache={k: v for k, v in counted.cache.items() if v},
        graphs=graphs,
        recompiles=max(0, graphs - max(graphs_first, 1)),
        checks=tuple(checks),
        policy_checks=tuple(policy),
        speed=max(speeds, key=lambda s: s.batch_size) if speeds else None,
        speeds=tuple(speeds),
        sampling=sampling,
        weights=tuple(weights),
        speed_seconds=speed_total,
        stage_seconds=stages,
        notes=json_safe(context.notes),  # strategies note anything; the report holds data
        **base,
    )
    if failure is not None:
        if not fallback:
            raise CompileFailedError(report)
        return eager, report
    assert candidate is not None
    candidate.train(model.training and composition.training)
    return candidate, report


def off_bucket_sizes(declared: Sequence[int], extras: Sequence[int]) -> tuple[int, ...]:
    """``extras`` moved off the declared sizes (the next odd size up), so they stay sizes
    the strategy was not told about: (3, 33) beside (1, 8, 64), (5, 35) beside (3, 33)."""
    chosen: list[int] = []
    for size in extras:
        while size in declared or size in chosen:
            size += 2
        chosen.append(size)
    return tuple(chosen)


def _is_auto(strategy: object) -> bool:
    if isinstance(strategy, str):
        return strategy.strip() == AUTO
    if isinstance(strategy, StrategySpec):
        return strategy.name == AUTO
    return isinstance(strategy, Composition) and strategy.names == (AUTO,)


def _weights_input(inputs: Sequence[CheckInputs]) -> CheckInputs:
    # A small batch of more than one row: cheap, and BatchNorm-style coupling shows.
    several = [d for d in inputs if d.batch_size > 1]
    return min(several, key=lambda d: d.batch_size) if several else inputs[0]


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
        raise _Failure(f"strategy '{name}' returned {type(candidate).__name__}, not an nn.Module",
                       Failure(FailureKind.CONTRACT, check="nn.Module", strategy=name))
    for method in ("get_action_and_value", "evaluate_actions"):
        if not callable(getattr(candidate, method, None)):
            raise _Failure(f"strategy '{name}' returned a module without {method}()",
                           Failure(FailureKind.CONTRACT, check=method, strategy=name))
    keys = list(candidate.state_dict().keys())
    if keys != expected_keys:
        missing = [k for k in expected_keys if k not in keys][:3]
        extra = [k for k in keys if k not in expected_keys][:3]
        raise _Failure(
            f"strategy '{name}' changed the state_dict keys (missing {missing}, unexpected {extra}); "
            "compiled and eager checkpoints must load into each other",
            Failure(FailureKind.CONTRACT, check="state_dict keys", strategy=name),
        )
