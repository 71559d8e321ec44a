"""The probe API: what a benchmark probe receives and what it returns.

A probe is registered by a plugin with ``register(ProbeSpec(name, run, ...))`` in its
``keisei_register_probes(register)`` hook. The engine calls ``run(context)`` once per
cell of the matrix (model x strategy x batch size) and records what it returns::

    from keisei_core import ProbeSpec, hookimpl
    from keisei_core.bench.probe_api import ProbeContext, ProbeResult

    def run_forward_latency(context: ProbeContext) -> ProbeResult:
        import torch

        obs = context.observations()          # (B, C, H, W) on the cell's device/dtype
        model = context.model                 # strategy applied (maybe compiled)

        def call() -> None:
            with torch.no_grad():
                model(obs)

        stats = context.time(call)            # seconds per call, engine's statistics
        return ProbeResult(
            metric="forward-latency", unit="ms", value=stats.median * 1e3,
            statistics=stats.scaled(1e3, "ms"), higher_is_better=False,
        )

    @hookimpl
    def keisei_register_probes(register):
        register(ProbeSpec("forward-latency", run_forward_latency, unit="ms",
                           higher_is_better=False))

Rules the engine relies on:
- ``context.model`` is the model after the cell's strategy (possibly compiled), in eval
  mode, or in train mode when the spec says ``needs_training=True`` (the strategy was
  then applied for training). ``context.eager_model`` holds the same initial weights,
  uncompiled. The engine builds and compiles once per (model, strategy, mode) and shares
  the pair across batch sizes and probes of that mode: eval-mode probes must not change
  weights; training probes may step an optimizer on ``context.model`` (only training
  probes see that model).
- Time with ``context.time(fn)`` (or ``context.time_interleaved({...})`` for A/B), which
  warm up, sample adaptively, synchronise CUDA and stop on the cell's settings; the
  returned :class:`~keisei_core.stats.Statistics` is in seconds per call.
- A probe that cannot measure this cell (wrong device, missing feature) raises
  :class:`ProbeUnsupported` with a reason: the cell is recorded ``skipped``. Any other
  exception marks the cell ``failed`` with the error; the run goes on.
- ``ProbeResult.value`` is the headline number in ``unit``; ``statistics`` (or None for
  single-shot measurements such as FLOP counts) backs it; ``extra`` holds any other
  JSON-serialisable facts (numbers, strings, lists, dicts).

Importing this module has no side effects and never imports torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.config.experiment import BenchSettings
from keisei_core.stats import Statistics

if TYPE_CHECKING:
    import cattrs
    import torch
    from torch import nn

    from keisei_core.compile.report import CompileReport

__all__ = ["ProbeContext", "ProbeResult", "ProbeUnsupported", "RolloutBatch"]


class ProbeUnsupported(Exception):
    """Raised by a probe for a cell it cannot measure; the cell is recorded as skipped."""


@attrs.frozen
class RolloutBatch:
    """Synthetic PPO minibatch: what ``evaluate_actions`` and the losses need.

    ``actions`` are legal under ``legal_masks``; ``old_log_probs`` are those of a uniform
    policy over the legal actions (an untrained network is close to it), so importance
    ratios start near 1 and the clipping is exercised as in early training.
    """

    observations: torch.Tensor
    legal_masks: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor


def _jsonable(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    import json

    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"ProbeResult.{attribute.name} must be JSON-serialisable: {error}") from None


def _finite_or_none(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"ProbeResult.{attribute.name} must be finite or None, got {value}")


@attrs.frozen
class ProbeResult:
    """What a probe measured for one cell.

    ``metric`` names the quantity (usually the probe name, e.g. ``throughput``), ``unit``
    its unit (``samples/s``, ``ms``, ``MiB``, ``FLOP``), ``value`` the headline number,
    ``statistics`` the repeated measurements behind it (seconds per call when produced
    by ``context.time``, or rescaled with ``Statistics.scaled``) or None for single-shot
    values, ``higher_is_better`` how comparisons read it, ``extra`` other JSON facts.
    """

    metric: str
    unit: str
    value: float | None = attrs.field(converter=attrs.converters.optional(float), validator=_finite_or_none)
    statistics: Statistics | None = None
    higher_is_better: bool = True
    extra: dict[str, Any] = attrs.field(factory=dict, validator=_jsonable)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready data (``statistics`` as :meth:`Statistics.to_dict`):
        the project converter's unstructuring."""
        data: dict[str, Any] = probe_result_converter().unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        """A result back from :meth:`to_dict`'s data (or from a results file's cell, which
        holds these keys among others: keys that are not fields are ignored)."""
        return probe_result_converter().structure(data, cls)


# -- the file boundary --------------------------------------------------------------------
# Probe results are (un)structured by the project's one cattrs converter; its hooks are
# registered on first use (importing this module has no side effects).
# What data without these keys (or with them null) means: files written by older versions.
_RESULT_DEFAULTS: dict[str, Any] = {"unit": "", "value": None, "higher_is_better": True, "extra": {}}


def _register_hooks(converter: cattrs.Converter) -> None:
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    from keisei_core.serialization import with_defaults

    unstructure = make_dict_unstructure_fn(ProbeResult, converter, extra=override(unstruct_hook=dict))
    structure_fields = make_dict_structure_fn(ProbeResult, converter, _cattrs_forbid_extra_keys=False)

    def structure_result(data: Any, cls: type[ProbeResult]) -> ProbeResult:
        return structure_fields(with_defaults(data, _RESULT_DEFAULTS), cls)

    converter.register_unstructure_hook(ProbeResult, unstructure)
    converter.register_structure_hook(ProbeResult, structure_result)


@functools.cache
def probe_result_converter() -> cattrs.Converter:
    """The project's converter with the hooks of :class:`ProbeResult` (and of the
    :class:`Statistics` it holds) registered."""
    from keisei_core.stats import statistics_converter

    converter = statistics_converter()
    _register_hooks(converter)
    return converter


@attrs.define
class ProbeContext:
    """One cell of the matrix as a probe sees it.

    Fields: the strategy-applied ``model`` and the uncompiled ``eager_model`` (same
    weights), the registered ``model_name`` and resolved ``model_options``, the
    ``strategy`` name (``eager`` for none), ``batch_size``, ``device`` (``cpu``/``cuda``),
    ``dtype`` name, ``seed`` for inputs, the timing ``settings``, the pinned ``threads``
    count, a private ``scratch_dir``, the observation shape and action count, the
    ``compile_report`` of the strategy (a typed ``CompileReport``; None for the baseline), ``training`` (model in train mode),
    ``recompile`` (builds a fresh model and applies the strategy again, returning
    ``(model, report)``; used by the compile-time probe), ``run_cache``, a dict shared
    by every cell of one run (e.g. the machine's calibrated peak FLOP/s), and
    ``plugins``, the local plugin paths/modules of the run, for probes that rebuild the
    cell in a child process (memory, compile-time), and ``options``, this probe's table
    from the config's ``[probe_options.<probe name>]`` (raw; the probe validates it), and
    ``baseline``, whether the cell's strategy is the baseline (``StrategySpec.baseline``,
    the built-in ``eager``): comparisons against eager have nothing to compare there.
    """

    model: nn.Module
    eager_model: nn.Module
    model_name: str
    model_options: dict[str, Any]
    strategy: str
    batch_size: int
    device: str
    dtype: str
    seed: int
    settings: BenchSettings
    threads: int
    scratch_dir: Path
    observation_shape: tuple[int, int, int]
    num_actions: int
    compile_report: CompileReport | None = None
    training: bool = False
    recompile: Callable[[], tuple[Any, Any]] | None = None
    run_cache: dict[str, Any] = attrs.field(factory=dict)
    plugins: tuple[str, ...] = ()
    options: dict[str, Any] = attrs.field(factory=dict)
    baseline: bool = False

    # -- inputs -------------------------------------------------------------------------
    @property
    def torch_dtype(self) -> torch.dtype:
        from keisei_core.dtypes import torch_dtype

        return torch_dtype(self.dtype)

    def observations(self, batch_size: int | None = None, *, seed: int | None = None) -> torch.Tensor:
        """Observation-like inputs ``(B, C, H, W)`` with the real plane structure."""
        from keisei_core.observations import make_observations

        channels, board, _ = self.observation_shape
        return make_observations(
            batch_size or self.batch_size,
            channels,
            board,
            seed=self.seed if seed is None else seed,
            device=self.device,
            dtype=self.torch_dtype,
        )

    def legal_masks(self, batch_size: int | None = None, *, seed: int | None = None) -> torch.Tensor:
        """Boolean masks ``(B, A)`` with tens to hundreds of legal actions per row."""
        from keisei_core.observations import make_legal_masks

        return make_legal_masks(
            batch_size or self.batch_size,
            self.num_actions,
            seed=self.seed if seed is None else seed,
            device=self.device,
        )

    def rollout_batch(self, batch_size: int | None = None, *, seed: int | None = None) -> RolloutBatch:
        """A synthetic PPO minibatch (see :class:`RolloutBatch`), reproducible from the seed."""
        import torch

        size = batch_size or self.batch_size
        seed = self.seed if seed is None else seed
        obs = self.observations(size, seed=seed)
        masks = self.legal_masks(size, seed=seed)
        gen = torch.Generator().manual_seed(seed + 7)
        cpu_masks = masks.cpu()
        # One legal action per row, uniformly: multinomial over the mask's 0/1 weights.
        actions = torch.multinomial(cpu_masks.float(), 1, generator=gen).squeeze(-1)
        legal_counts = cpu_masks.sum(dim=1).float()
        old_log_probs = -torch.log(legal_counts)
        advantages = torch.randn(size, generator=gen)
        old_values = torch.randn(size, generator=gen)
        returns = old_values + advantages
        device = self.device
        return RolloutBatch(
            observations=obs,
            legal_masks=masks,
            actions=actions.to(device),
            old_log_probs=old_log_probs.to(device),
            advantages=advantages.to(device),
            returns=returns.to(device),
            old_values=old_values.to(device),
        )

    # -- timing -------------------------------------------------------------------------
    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU)."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def timing_settings(self) -> dict[str, Any]:
        """The ``[bench]`` timing settings (and the device sync) as keyword arguments of
        :func:`keisei_core.timing.measure`, for probes that time with their own clock."""
        s = self.settings
        return {
            "warmup_seconds": s.warmup_seconds,
            "min_samples": s.min_samples,
            "max_samples": s.max_samples,
            "time_budget_seconds": s.time_budget_seconds,
            "target_iqr_ratio": s.target_iqr_ratio,
            "sync": self.synchronize if self.device == "cuda" else None,
        }

    def time(self, fn: Callable[[], Any], *, per_call: bool = False) -> Statistics:
        """Seconds per call of ``fn``: warm-up until stable, adaptive repeats, CUDA sync.

        Calls shorter than 5 ms are timed in blocks (a sample is a block's mean);
        ``per_call=True`` times each call on its own, for latency distributions."""
        from keisei_core.timing import MIN_BLOCK_SECONDS, measure

        block = 0.0 if per_call else MIN_BLOCK_SECONDS
        return measure(fn, min_block_seconds=block, **self.timing_settings())

    def time_interleaved(
        self, fns: Mapping[str, Callable[[], Any]], *, per_call: bool = False
    ) -> dict[str, Statistics]:
        """Seconds per call of each callable, sampled in rounds of shuffled order (A/B).
        Round ``i`` holds sample ``i`` of every callable, so samples pair up by index."""
        from keisei_core.timing import MIN_BLOCK_SECONDS, measure_interleaved

        block = 0.0 if per_call else MIN_BLOCK_SECONDS
        return measure_interleaved(fns, seed=self.seed, min_block_seconds=block, **self.timing_settings())
