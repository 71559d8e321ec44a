"""What a compilation did, as plain attrs values (no torch): the report and its checks.

A report is serialisable with :func:`keisei_core.config.unstructure` (or
:meth:`CompileReport.to_dict`, which also turns non-finite floats into strings so the
result is strict JSON).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from keisei_core.compile.policy_checks import PolicyCheck, PolicyThresholds
from keisei_core.errors import KeiseiError

STATUSES = ("compiled", "fallback", "failed", "skipped")
MODES = ("eval", "train")


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


@attrs.frozen
class CompileReport:
    """What :func:`keisei_core.compile.compile_model` did with one model and strategy.

    ``status``: ``compiled`` (validated, the compiled model is returned), ``fallback`` (an
    exception, a mismatch or the speed guard made it return the eager model; ``reason``
    says which), ``failed`` (the same with ``fallback=False``: raised as
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
    status: str = attrs.field(validator=attrs.validators.in_(STATUSES))
    reason: str | None = None
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
    auto: dict[str, Any] | None = None
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
        """JSON-ready data (strict JSON: infinities and NaN become strings)."""
        from keisei_core.config.converter import unstructure

        data: dict[str, Any] = _finite_json(unstructure(self))
        if self.speed is not None:
            data["speed"]["speedup"] = _finite_json(self.speed.speedup)
            data["speed"]["verdict"] = self.speed.verdict
        for entry, speed in zip(data.get("speeds") or [], self.speeds, strict=True):
            entry["speedup"] = _finite_json(speed.speedup)
            entry["verdict"] = speed.verdict
        return data


def _finite_json(value: Any) -> Any:
    from keisei_core.json_data import json_safe

    return json_safe(value)


class CompileFailedError(KeiseiError):
    """``compile_model(..., fallback=False)`` could not produce a validated compiled model.

    The message is the report's reason; ``report`` holds the whole report (status ``failed``).
    """

    def __init__(self, report: CompileReport) -> None:
        super().__init__(f"strategy '{report.strategy}' failed: {report.reason}")
        self.report = report
