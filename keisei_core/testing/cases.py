"""What the contract suites run on: model cases, the plugin host, builds and compiles.

Built models are rebuilt cheaply from a seed; compiled ones are expensive (10-40 s on a
2-core CPU), so :func:`compiled` keeps every (host, model case, strategy, device) result
for the whole test session: the model contract's "equivalent under strategy S" and the
strategy contract's "equivalent on model M" share one compile.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.errors import KeiseiError
from keisei_core.models import build_from_spec, resolve_options
from keisei_core.plugins import PluginHost, get_host
from keisei_core.statuses import CompileStatus

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.compile.composition import Composition
    from keisei_core.compile.report import CompileReport
    from keisei_core.specs import StrategySpec

DEFAULT_SEED = 0


class ContractUsageError(KeiseiError):
    """A contract class is configured wrongly (no model name, unknown plugin file...)."""


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), _hashable(v)) for k, v in options.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _freeze(value)
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


@attrs.frozen
class ModelCase:
    """One model under test: a registered name, option overrides, and a display label.

    ``size`` says where the options came from (``given``, ``preset`` or ``shrunk``).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=lambda o: _freeze(dict(o)))
    size: str = "given"

    @property
    def overrides(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, tuple) and v and isinstance(v[0], tuple) else v) for k, v in self.options}

    @property
    def id(self) -> str:
        if self.size in ("preset", "shrunk"):
            return f"{self.name}[{self.size}]"
        if not self.options:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in self.options) + "]"


def as_case(entry: str | tuple[str, Mapping[str, Any]] | ModelCase) -> ModelCase:
    """``"name"``, ``("name", {options})`` or a ModelCase."""
    if isinstance(entry, ModelCase):
        return entry
    if isinstance(entry, str):
        return ModelCase(entry)
    name, options = entry
    return ModelCase(name, options)


# -- the plugin host ----------------------------------------------------------------------
_HOSTS: dict[tuple[str, ...], PluginHost] = {}


def contract_host(plugins: Sequence[str] = ()) -> PluginHost:
    """The process-wide host, or (with local ``plugins``) one host per plugin list that
    loads them as ``keisei -p`` does. A local plugin that fails to load is an error here:
    the contract would otherwise only say its model is unknown."""
    key = tuple(str(p) for p in plugins)
    if not key:
        return get_host()
    host = _HOSTS.get(key)
    if host is None:
        host = PluginHost(key).load()
        for record in host.records:
            if record.source == "local" and record.status == "failed":
                raise ContractUsageError(f"plugin '{record.target}' failed to load: {record.error}")
        _HOSTS[key] = host
    return host


def matches(name: str, patterns: str | Sequence[str] | None) -> bool:
    """Shell-style patterns: ``"*"``, ``"restower*"``, ``["eager", "inductor*"]``; a
    comma-separated string is a list. None or empty matches nothing."""
    if patterns is None:
        return False
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# -- building ---------------------------------------------------------------------------
def build(host: PluginHost, case: ModelCase, *, seed: int = DEFAULT_SEED, device: str = "cpu") -> nn.Module:
    """A fresh model for ``case`` from ``seed`` (eval mode, on ``device``)."""
    import torch

    spec = host.models.get(case.name)
    options = resolve_options(spec, case.overrides, where=f"model '{case.name}' options")
    torch.manual_seed(seed)
    model = build_from_spec(spec, options)
    return model.to(device).eval()


def strategies_for(host: PluginHost, device: str, dtype: str = "float32") -> list[StrategySpec]:
    """Registered strategies that run on ``device`` in ``dtype`` (eval mode)."""
    return [r.spec for r in host.strategies if device in r.spec.devices and dtype in r.spec.dtypes]


# -- compiling --------------------------------------------------------------------------
_COMPOSITIONS: dict[tuple[int, str], Composition] = {}


def composition(host: PluginHost, strategy: str) -> Composition:
    """``strategy`` (``"channels-last+inductor"``) parsed into its composition, once per
    host and name: collection (slow marks), compiling and the checks share it."""
    key = (id(host), strategy)
    found = _COMPOSITIONS.get(key)
    if found is None:
        from keisei_core.compile import parse_composition

        found = _COMPOSITIONS[key] = parse_composition(strategy, host.strategies)
    return found


@attrs.frozen
class CompileOutcome:
    """A strategy applied to an eager model: the result and what the report said."""

    model: Any
    eager: Any
    status: CompileStatus
    reason: str | None
    report: CompileReport
    composition: Composition


def apply_strategy(
    host: PluginHost,
    strategy: str,
    eager: nn.Module,
    example_obs: torch.Tensor,
    *,
    batch_sizes: Sequence[int],
    device: str = "cpu",
    fallback: bool = True,
) -> CompileOutcome:
    """Apply ``strategy`` to a private copy of ``eager`` through ``compile_model``, which
    validates it against eager at ``batch_sizes`` and falls back when it raises or differs.

    Validation is in eval mode: the contracts compare acting, and ``compile_model``
    validates train mode itself whenever a model is compiled for training. Eval only
    also halves the compiles (no backward graphs).
    """
    from keisei_core.compile import compile_model

    parsed = composition(host, strategy)
    model, report = compile_model(
        eager,
        parsed,
        example_obs=example_obs,
        fallback=fallback,
        host=host,
        device=device,
        batch_sizes=tuple(dict.fromkeys(batch_sizes)),
        training=False,
        speed_seconds=0.0,  # every check, but no timing: a contract is about correctness
    )
    return CompileOutcome(model, eager, report.status, report.reason, report, parsed)


def declined(outcome: CompileOutcome) -> bool:
    """Whether a fallback is the strategy declining the model on purpose: its ``apply``
    raised one of keisei's user-facing errors (a KeiseiError subclass, one clear line,
    e.g. "the model declares no repeated blocks"), as the report's structured
    ``failure`` records it. Compiler exceptions, a failing first call and outputs that
    differ from eager are not declines."""
    failure = outcome.report.failure if outcome.report is not None else None
    return outcome.status == CompileStatus.FALLBACK and failure is not None and failure.declined


_COMPILED: dict[tuple[Any, ...], CompileOutcome] = {}


def compiled(
    host: PluginHost,
    case: ModelCase,
    strategy: str,
    *,
    device: str = "cpu",
    batch_sizes: Sequence[int] = (1, 4),
) -> CompileOutcome:
    """``strategy`` applied to ``case``'s model built from the default seed and validated
    at ``batch_sizes``, once per session (eager and compiled model are both kept)."""
    key = (id(host), case, strategy, device, tuple(batch_sizes))
    outcome = _COMPILED.get(key)
    if outcome is None:
        from keisei_core.introspect import model_shapes
        from keisei_core.observations import make_observations

        eager = build(host, case, device=device)
        channels, board, _ = model_shapes(eager).observation
        example = make_observations(max(batch_sizes), channels, board, seed=DEFAULT_SEED, device=device)
        outcome = apply_strategy(host, strategy, eager, example, batch_sizes=batch_sizes, device=device)
        _COMPILED[key] = outcome
    return outcome


def clear_compiled() -> None:
    """Forget every compiled model of this session (frees their memory)."""
    _COMPILED.clear()


# -- every registered model ------------------------------------------------------------
@attrs.frozen
class SizedCase:
    """A registered model's contract case, its family and what a forward pass costs."""

    case: ModelCase
    family: str | None
    flops_per_sample: int | None
    ops_per_forward: int | None

    @property
    def graph_size(self) -> float:
        """Aten ops per forward (what compile time grows with); unknown sizes sort last."""
        return float(self.ops_per_forward) if self.ops_per_forward is not None else math.inf


_REGISTERED: dict[tuple[int, str], list[SizedCase]] = {}


def registered_cases(host: PluginHost, size: str = "auto") -> list[SizedCase]:
    """Every registered model, its options chosen by
    :func:`keisei_core.testing.sizing.contract_options` (``auto``: the preset when cheap,
    else shrunk), grouped by family and smallest graph first within one. Presets that
    resolve to the same options (``restower`` and ``restower-deep`` both shrink to an
    8 x 8 SE tower) are one model, tested once under its first name. Sized once per host."""
    key = (id(host), size)
    found = _REGISTERED.get(key)
    if found is None:
        from keisei_core.testing.sizing import contract_options

        seen: set[tuple[Any, ...]] = set()
        found = []
        for registration in host.models:
            spec = registration.spec
            chosen = contract_options(spec, size)
            resolved = resolve_options(spec, chosen.overrides)
            identity = (spec.build, type(resolved), _freeze(attrs.asdict(resolved)))
            if identity in seen:
                continue
            seen.add(identity)
            case = ModelCase(spec.name, chosen.overrides, size=chosen.size)
            found.append(SizedCase(case, spec.family, chosen.cost.flops_per_sample, chosen.cost.ops_per_forward))
        found.sort(key=lambda s: (s.family or s.case.name, s.graph_size, s.case.name))
        _REGISTERED[key] = found
    return found


# -- planning the model x strategy matrix -------------------------------------------------
MATRIX_LEVELS = ("compilers", "families", "full")


def is_cheap_strategy(spec: StrategySpec) -> bool:
    """Transforms (channels-last, bf16, fused ops, checkpointing) and eager apply in well
    under a second; compilers (inductor, AOT, ONNX export) take 10-130 s on a 2-core CPU."""
    return spec.kind == "transform" or spec.baseline


def matrix_plan(
    models: Sequence[SizedCase], strategies: Sequence[StrategySpec], level: str = "compilers"
) -> list[tuple[ModelCase, str]]:
    """The (model case, strategy) pairs to check for equivalence.

    Every level checks every model under every cheap strategy. Compilers: ``compilers``
    runs each once, on the model with the smallest forward graph; ``families`` on a
    cover in which each compiler meets one model family and each family one compiler
    (:func:`covering_pairs`); ``full`` runs every model under every compiler.
    """
    if level not in MATRIX_LEVELS:
        raise ValueError(f"matrix level must be one of {', '.join(MATRIX_LEVELS)}, got {level!r}")
    cheap = [spec.name for spec in strategies if is_cheap_strategy(spec)]
    costly = [spec.name for spec in strategies if not is_cheap_strategy(spec)]
    pairs = [(sized.case, name) for sized in models for name in cheap]
    if not models or not costly:
        return pairs
    if level == "full":
        return pairs + [(sized.case, name) for sized in models for name in costly]
    if level == "families":
        return pairs + covering_pairs([(sized.case, sized.family) for sized in models], costly)
    smallest = min(models, key=lambda sized: (sized.graph_size, sized.case.name)).case
    return pairs + [(smallest, name) for name in costly]


def covering_pairs(models: Sequence[tuple[ModelCase, str | None]], strategies: Iterable[str]) -> list[tuple[ModelCase, str]]:
    """Pairs of (model case, strategy) in which every strategy meets at least one model
    family and every family meets at least one strategy, with as few pairs as that
    needs: max(families, strategies). ``models`` are (case, family) with the cheapest
    case of each family first; a model without a family is its own family.

    Compiles cost 10-130 s each on a 2-core CPU (more for op-heavy graphs), so this is
    ``--keisei-matrix families``, and the full matrix is for machines with time.
    """
    representatives: dict[str, ModelCase] = {}
    for case, family in models:
        representatives.setdefault(family or case.name, case)
    reps = list(representatives.values())
    names = list(strategies)
    if not reps or not names:
        return []
    count = max(len(reps), len(names))
    return [(reps[i % len(reps)], names[i % len(names)]) for i in range(count)]
