"""What a compilation did, as plain attrs values (no torch): the report and its checks.

The report stays a typed value through the compile layer, the bench engine, ``auto``,
the CLI and the test kit; it becomes data only at the file boundary, through the
project's cattrs converter (:func:`report_data` / :func:`report_from_data`, strict JSON).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import attrs
import cattrs

from keisei_core.compile.policy_checks import PolicyCheck, PolicyThresholds
from keisei_core.errors import KeiseiError
from keisei_core.statuses import CompileStatus, FailureKind

STATUSES = tuple(CompileStatus)
MODES = ("eval", "train")


@attrs.frozen
class Failure:
    """Why a strategy was declined (``skipped``) or rejected (``fallback``/``failed``), as
    data: ``CompileReport.reason`` is the same in words.

    ``kind`` says which family (:class:`~keisei_core.statuses.FailureKind`); ``check``
    names the check or stage (``forward.logits``, ``backward.grad``, ``sampling``,
    ``weights:load_state_dict``, ``policy:kl``, ``speed``, ``applying``, ``the first
    call``...); ``strategy`` the part concerned (unsupported, apply errors, contract);
    ``batch_size``/``mode`` where the check ran; ``measured`` against ``allowed`` where
    the check has one figure each (outputs: max abs diff vs atol, the element bound
    being ``atol + rtol * |eager|``; gradients: relative L2 error vs grad rtol; sampling:
    p-value vs alpha, or illegal draws vs 0; policy: the metric vs its threshold; speed:
    compiled vs eager milliseconds). ``error`` is the exception's type name when one was
    raised; ``user_error`` says it was a KeiseiError (one clear line: a strategy that
    declines a model on purpose raises one from ``apply``).
    """

    kind: FailureKind = attrs.field(converter=FailureKind)
    check: str | None = None
    strategy: str | None = None
    batch_size: int | None = None
    mode: str | None = None
    measured: float | None = None
    allowed: float | None = None
    error: str | None = None
    user_error: bool = False

    def summary(self) -> str:
        """``mismatch: forward.logits, batch 4 (eval), measured 0.5 vs allowed 1e-05``."""
        parts = [p for p in (self.check, f"strategy '{self.strategy}'" if self.strategy else None) if p]
        if self.batch_size is not None:
            parts.append(f"batch {self.batch_size}" + (f" ({self.mode})" if self.mode else ""))
        elif self.mode:
            parts.append(self.mode)
        if self.measured is not None:
            parts.append(f"measured {self.measured:.3g}"
                         + (f" vs allowed {self.allowed:.3g}" if self.allowed is not None else ""))
        if self.error:
            parts.append(f"raised {self.error}" + (" (a KeiseiError)" if self.user_error else ""))
        return f"{self.kind}: {', '.join(parts)}" if parts else str(self.kind)

    @property
    def declined(self) -> bool:
        """The strategy declined the model on purpose: its ``apply`` raised a KeiseiError."""
        return self.kind is FailureKind.APPLY_ERROR and self.user_error

    @property
    def unsupported(self) -> bool:
        """The strategy does not support the device, dtype or training (nothing ran)."""
        return self.kind in (FailureKind.UNSUPPORTED_DEVICE, FailureKind.UNSUPPORTED_DTYPE,
                             FailureKind.UNSUPPORTED_MODE)

    @classmethod
    def raised(cls, stage: str, exc: BaseException, *, strategy: str | None = None) -> Failure:
        """An exception at ``stage``: applying a part (``apply-error``) or later (``run-error``)."""
        kind = FailureKind.APPLY_ERROR if strategy is not None else FailureKind.RUN_ERROR
        return cls(kind, check=stage, strategy=strategy, error=type(exc).__name__,
                   user_error=isinstance(exc, KeiseiError))


@attrs.frozen
class Tolerance:
    """Outputs agree when ``|compiled - eager| <= atol + rtol * |eager|`` element by element
    (``torch.allclose``); gradients agree when their relative L2 error
    ``||g_compiled - g_eager|| / ||g_eager||`` over all parameters is at most ``grad_rtol``
    (gradients span orders of magnitude across layers, and low precision perturbs the
    small ones most)."""

    atol: float = attrs.field(validator=attrs.validators.ge(0.0))
    rtol: float = attrs.field(validator=attrs.validators.ge(0.0))
    grad_rtol: float = attrs.field(default=1e-2, validator=attrs.validators.ge(0.0))


@attrs.frozen
class EquivalenceCheck:
    """One output of one method compared between the compiled and the eager model.

    ``dtype`` is the precision the compiled model computes in (whose tolerance applies);
    ``max_rel_diff`` is taken over elements whose eager magnitude exceeds ``atol`` (near
    zero a relative difference says nothing). For ``backward.grad`` it is the relative L2
    error of all gradients, checked against ``rtol`` (the tolerance's ``grad_rtol``;
    ``atol`` is 0).

    ``referee_*``: set when the output missed the tolerance and a float64 copy of the
    eager model refereed (only where the compiled model computes in the model's own
    dtype): each model's error against float64 (max abs difference; relative L2 for
    gradients). The check then passes when the compiled error is at most twice eager's
    plus a tenth of the tolerance -- eager is not the truth, only a reference.
    """

    batch_size: int
    mode: str
    dtype: str
    method: str
    output: str
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    rtol: float
    passed: bool
    referee_eager_error: float | None = None
    referee_compiled_error: float | None = None
    problem: str | None = None

    def failure(self) -> Failure:
        """This (failed) check as a :class:`Failure`."""
        if self.problem is not None:
            return Failure(FailureKind.DTYPE, check=f"{self.method}.{self.output}", batch_size=self.batch_size,
                           mode=self.mode)
        if self.method == "backward":
            return Failure(FailureKind.MISMATCH, check="backward.grad", batch_size=self.batch_size, mode=self.mode,
                           measured=self.max_rel_diff, allowed=self.rtol)
        return Failure(FailureKind.MISMATCH, check=f"{self.method}.{self.output}", batch_size=self.batch_size,
                       mode=self.mode, measured=self.max_abs_diff, allowed=self.atol)

    def describe(self) -> str:
        if self.problem is not None:
            return f"{self.method}.{self.output} at batch {self.batch_size} ({self.mode}): {self.problem}"
        if self.method == "backward":
            return (
                f"gradients at batch {self.batch_size} ({self.mode}): relative L2 error "
                f"{self.max_rel_diff:.3g} > {self.rtol:g}"
            )
        return (
            f"{self.method}.{self.output} at batch {self.batch_size} ({self.mode}): "
            f"max abs diff {self.max_abs_diff:.3g} > atol {self.atol:g} + rtol {self.rtol:g} * |eager|"
        )


@attrs.frozen
class SamplingCheck:
    """``get_action_and_value(deterministic=False)`` of the compiled model, sampled.

    ``draws`` sampled actions over every validated batch size (several calls at the
    largest batch of at most 64), of which ``illegal`` were outside the legal mask (any
    is a failure). The draws are tested against eager's own distribution (the masked
    softmax of eager's logits for the same rows): each draw becomes its randomised
    probability integral transform, uniform on [0, 1] exactly when the draws follow
    eager's distribution, and ``statistic`` is Pearson's chi-square of those values in
    ``bins`` equal bins (``bins - 1`` degrees of freedom). The check fails when its
    ``p_value`` is below ``alpha``: a correct strategy fails with probability ``alpha``
    per seed. The compiled model's reported log-probability of each sampled action must
    also match eager's for that action (``log_prob_max_abs_diff``, the tolerance's atol
    and rtol).
    """

    draws: int
    illegal: int
    bins: int
    statistic: float
    p_value: float
    alpha: float
    log_prob_max_abs_diff: float
    log_prob_passed: bool
    passed: bool
    error: str | None = None

    def failure(self) -> Failure:
        """This (failed) check as a :class:`Failure`."""
        if self.error is not None:
            return Failure(FailureKind.SAMPLING, check="sampling")
        if self.illegal:
            return Failure(FailureKind.SAMPLING, check="sampling:legal", measured=float(self.illegal), allowed=0.0)
        if not self.log_prob_passed:
            return Failure(FailureKind.SAMPLING, check="sampling:log_prob", measured=self.log_prob_max_abs_diff)
        return Failure(FailureKind.SAMPLING, check="sampling:distribution", measured=self.p_value, allowed=self.alpha)

    def describe(self) -> str:
        if self.error is not None:
            return f"sampling (deterministic=False): {self.error}"
        if self.illegal:
            return f"sampling (deterministic=False): {self.illegal} of {self.draws} sampled actions are illegal"
        if not self.log_prob_passed:
            return (
                "sampling (deterministic=False): log-probabilities of sampled actions differ from eager's "
                f"by up to {self.log_prob_max_abs_diff:.3g}"
            )
        return (
            f"sampling (deterministic=False): {self.draws} draws do not follow eager's distribution "
            f"(chi-square {self.statistic:.1f} on {self.bins - 1} df, p = {self.p_value:.2g} < {self.alpha:g})"
        )


@attrs.frozen
class WeightsCheck:
    """After validation, new weights were given to both models; does the compiled one follow?

    ``how``: ``load_state_dict`` (new weights loaded), ``in-place`` (parameters changed in
    place, as an optimizer step does; checked when the strategy does not declare
    ``frozen_weights``), ``optimizer-step`` (one SGD step with the same gradients on
    both; training strategies), ``restore`` (the original weights loaded back).
    ``outcome``: ``followed`` (outputs match eager's with the new weights), ``rejected``
    (the compiled model refused to run with them: a KeiseiError, allowed only for
    ``frozen_weights`` strategies) or ``stale`` (it kept computing something else).
    """

    how: str
    outcome: str
    max_abs_diff: float
    passed: bool
    detail: str | None = None

    def failure(self) -> Failure:
        """This (failed) check as a :class:`Failure`."""
        return Failure(FailureKind.WEIGHTS, check=f"weights:{self.how}", measured=self.max_abs_diff)

    def describe(self) -> str:
        verb = {"followed": "followed", "rejected": "rejected the new weights", "stale": "was stale"}
        text = f"after {self.how} the compiled model {verb.get(self.outcome, self.outcome)}"
        if self.outcome == "stale":
            text += f" (outputs {self.max_abs_diff:.3g} off eager's with the new weights)"
        return f"{text}: {self.detail}" if self.detail else text


@attrs.frozen
class SpeedCheck:
    """Eager and compiled forward (eval, no grad) at one batch size, timed interleaved and paired."""

    batch_size: int
    samples: int
    eager_ms: float
    compiled_ms: float
    eager_iqr_ms: float
    compiled_iqr_ms: float
    ratio_median: float | None = None
    ratio_q1: float | None = None
    ratio_q3: float | None = None

    def failure(self) -> Failure:
        """Not faster than eager here (the ``faster`` guard) as a :class:`Failure`."""
        return Failure(FailureKind.SPEED, check="speed", batch_size=self.batch_size, mode="eval",
                       measured=self.compiled_ms, allowed=self.eager_ms)

    @property
    def speedup(self) -> float:
        """Eager median over compiled median (> 1 means the compiled model is faster)."""
        return self.eager_ms / self.compiled_ms if self.compiled_ms > 0 else math.inf

    @property
    def faster(self) -> bool:
        return self.compiled_ms < self.eager_ms

    @property
    def verdict(self) -> str:
        """``faster`` / ``slower`` when the interquartile range of the per-pair ratios
        (eager / compiled, each pair timed back to back) lies wholly above / below 1,
        else ``same`` (within the noise)."""
        low, high = self.ratio_q1, self.ratio_q3
        if low is None or high is None:
            return "faster" if self.faster else "slower"
        if low > 1.0:
            return "faster"
        if high < 1.0:
            return "slower"
        return "same"


# -- the auto tuner's report (keisei_core.compile.auto), held by CompileReport.auto ----------
@attrs.frozen
class Candidate:
    """What happened to one candidate: ``validated`` (passed every check, timed),
    ``fallback`` (failed a check; ``reason`` says which), ``skipped`` (unsupported here),
    ``pruned`` (beyond the search bound)."""

    strategy: str
    stage: int
    status: str
    reason: str | None = None
    compile_seconds: float | None = None
    validation_seconds: float | None = None
    total_seconds: float | None = None
    warm_start: bool | None = None
    # The compile report's own speed checks (its JSON adds each one's speedup and verdict).
    speeds: tuple[SpeedCheck, ...] = ()

    def speed_at(self, batch_size: int) -> SpeedCheck | None:
        return next((s for s in self.speeds if s.batch_size == batch_size), None)


@attrs.frozen
class Choice:
    batch_size: int
    strategy: str
    speedup: float


@attrs.frozen
class TuneReport:
    """The decision and every candidate. ``reused``: the decision came from the cache
    (``candidates`` are the original run's); ``tune_seconds``: this call's wall time."""

    model: str | None
    device: str
    dtype: str
    batch_sizes: tuple[int, ...]
    choices: tuple[Choice, ...]
    candidates: tuple[Candidate, ...]
    key: str
    cache_path: str | None
    reused: bool
    tune_seconds: float
    original_tune_seconds: float
    cpu: str
    threads: int
    torch_version: str
    notes: dict[str, Any] = attrs.field(factory=dict)

    def choice_for(self, batch_size: int) -> Choice:
        return bucket_choice(self.choices, batch_size)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON data through the project's converter (the cache file, ``--json``)."""
        return _json_data(self)


def bucket_choice(choices: Sequence[Choice], batch_size: int) -> Choice:
    """The choice of the smallest declared size at least ``batch_size``, else the largest."""
    ordered = sorted(choices, key=lambda c: c.batch_size)
    return next((c for c in ordered if c.batch_size >= batch_size), ordered[-1])


def policy_failure(check: PolicyCheck) -> Failure:
    """A missed policy-level threshold (quantized strategies) as a :class:`Failure`."""
    return Failure(FailureKind.POLICY, check=f"policy:{check.metric}", batch_size=check.batch_size,
                   mode=check.mode, measured=check.found, allowed=check.threshold)


@attrs.frozen
class CompileReport:
    """What :func:`keisei_core.compile.compile_model` did with one model and strategy.

    ``status``: ``compiled`` (validated, the compiled model is returned), ``fallback`` (an
    exception, a mismatch or the speed guard made it return the eager model; ``reason``
    says which in words, ``failure`` as data), ``failed`` (the same with ``fallback=False``: raised as
    :class:`CompileFailedError`), ``skipped`` (the strategy does not support the device,
    dtype or training; nothing was compiled).

    ``compile_seconds`` covers applying every part and the first call (where lazy
    compilers compile). ``graphs`` counts TorchDynamo graphs compiled during the whole
    run, ``recompiles`` those after the first call (new batch-size buckets, train mode,
    gradients). ``warm_start`` says whether compiled artifacts from an earlier run were
    reused (None when the strategy caches nothing); ``cache`` holds the cache counters
    behind it.
    """

    strategy: str
    status: CompileStatus = attrs.field(converter=CompileStatus)
    reason: str | None = None
    failure: Failure | None = None
    model: str | None = None
    model_options: dict[str, Any] = attrs.field(factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    precision: str = "float32"
    batch_sizes: tuple[int, ...] = ()
    modes: tuple[str, ...] = ()
    tolerance: Tolerance | None = None
    compile_seconds: float | None = None
    validation_seconds: float | None = None
    total_seconds: float = 0.0
    warm_start: bool | None = None
    cache: dict[str, int] = attrs.field(factory=dict)
    graphs: int = 0
    recompiles: int = 0
    checks: tuple[EquivalenceCheck, ...] = ()
    speed: SpeedCheck | None = None
    notes: dict[str, Any] = attrs.field(factory=dict)
    torch_version: str | None = None
    # Quantized strategies (precision int8) are judged at the policy level instead of
    # output by output (keisei_core.compile.policy_checks): thresholds and per-batch checks.
    policy_thresholds: PolicyThresholds | None = None
    policy_checks: tuple[PolicyCheck, ...] = ()
    declared_batch_sizes: tuple[int, ...] = ()
    speeds: tuple[SpeedCheck, ...] = ()
    sampling: SamplingCheck | None = None
    weights: tuple[WeightsCheck, ...] = ()
    frozen_weights: bool = False
    speed_seconds: float | None = None
    auto: TuneReport | None = None
    stage_seconds: dict[str, float] = attrs.field(factory=dict)

    def speed_at(self, batch_size: int) -> SpeedCheck | None:
        """The speed measured at ``batch_size`` (None when not measured there)."""
        return next((s for s in self.speeds if s.batch_size == batch_size), None)

    @property
    def ok(self) -> bool:
        """True when the returned model is the compiled one."""
        return self.status == "compiled"

    @property
    def failed_checks(self) -> tuple[EquivalenceCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def summary(self) -> str:
        """One line: ``inductor: compiled in 12.3 s (warm), 2 recompiles, 54/54 checks passed``."""
        head = f"{self.strategy}: {self.status}"
        if self.compile_seconds is not None:
            head += f" in {self.compile_seconds:.1f} s"
            if self.warm_start is not None:
                head += " (warm)" if self.warm_start else " (cold)"
        parts = [head]
        if self.status in ("compiled", "fallback", "failed") and self.checks:
            passed = sum(c.passed for c in self.checks)
            parts.append(f"{self.recompiles} recompile(s)")
            parts.append(f"{passed}/{len(self.checks)} checks passed")
        if self.status in ("compiled", "fallback", "failed") and self.policy_checks:
            passed = sum(c.passed for c in self.policy_checks)
            parts.append(f"{passed}/{len(self.policy_checks)} policy checks passed")
        if self.speeds:
            parts.append(", ".join(f"{s.speedup:.2f}x eager at batch {s.batch_size}" for s in self.speeds))
        elif self.speed is not None:
            parts.append(f"{self.speed.speedup:.2f}x eager at batch {self.speed.batch_size}")
        line = ", ".join(parts)
        return f"{line}: {self.reason}" if self.reason else line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (strict JSON): :func:`report_data` of this report."""
        return report_data(self)


# -- the file boundary --------------------------------------------------------------------
# Reports are unstructured by the project's one cattrs converter; these hooks add what a
# reader of the JSON wants beside the fields (each speed check's speedup and verdict, which
# are properties) and drop it again when structuring.
_SPEED_PROPERTIES = ("speedup", "verdict")


def _register_hooks(converter: cattrs.Converter) -> None:
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

    unstructure_fields = make_dict_unstructure_fn(SpeedCheck, converter)
    structure_fields = make_dict_structure_fn(SpeedCheck, converter)

    def unstructure_speed(speed: SpeedCheck) -> dict[str, Any]:
        data: dict[str, Any] = unstructure_fields(speed)
        data.update(speedup=speed.speedup, verdict=speed.verdict)
        return data

    def structure_speed(data: Any, cls: type) -> SpeedCheck:
        fields = {k: v for k, v in data.items() if k not in _SPEED_PROPERTIES} if isinstance(data, dict) else data
        return structure_fields(fields, cls)

    converter.register_unstructure_hook(SpeedCheck, unstructure_speed)
    converter.register_structure_hook(SpeedCheck, structure_speed)


def _project_converter() -> cattrs.Converter:
    from keisei_core.serialization import converter

    return converter


_register_hooks(_project_converter())


def _float_or_text(value: Any, _type: type) -> float:
    # report_data wrote inf, -inf and nan as text (strict JSON has none); a results file
    # wrote them as null, which for a float that is never None can only have been one.
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


@functools.cache
def _reading_converter() -> cattrs.Converter:
    reading = _project_converter().copy()
    reading.register_structure_hook(float, _float_or_text)
    _register_hooks(reading)
    return reading


def report_data(report: CompileReport) -> dict[str, Any]:
    """``report`` as strict-JSON data (results files, ``--json``, checkpoints): the
    converter's unstructuring, statuses as their text, non-finite floats as strings."""
    return _json_data(report)


def _json_data(value: Any) -> dict[str, Any]:
    from keisei_core.json_data import json_safe
    from keisei_core.serialization import unstructure

    return json_safe(unstructure(value))  # type: ignore[no-any-return]


def report_from_data(data: Any, where: str = "compile report") -> CompileReport:
    """A report back from :func:`report_data`; data that is not one is an InputError naming ``where``."""
    from keisei_core.errors import InputError
    from keisei_core.oneline import one_line

    try:
        return _reading_converter().structure(data, CompileReport)
    except Exception as exc:  # cattrs raises exception groups of any kind
        raise InputError(f"{where}: not a compile report ({one_line(exc, limit=200)})") from None


class CompileFailedError(KeiseiError):
    """``compile_model(..., fallback=False)`` could not produce a validated compiled model.

    The message is the report's reason; ``report`` holds the whole report (status ``failed``).
    """

    def __init__(self, report: CompileReport) -> None:
        super().__init__(f"strategy '{report.strategy}' failed: {report.reason}")
        self.report = report
