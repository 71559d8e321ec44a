"""What the contract suites run on: model cases, the plugin host, builds and compiles.

Built models are rebuilt cheaply from a seed; compiled ones are expensive (10-40 s on a
2-core CPU), so :func:`compiled` keeps every (host, model case, strategy, device) result
for the whole test session: the model contract's "equivalent under strategy S" and the
strategy contract's "equivalent on model M" share one compile.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.errors import KeiseiError
from keisei_core.models import build_from_spec, resolve_options
from keisei_core.plugins import PluginHost, get_host

if TYPE_CHECKING:
    import torch
    from torch import nn

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
@attrs.frozen
class CompileOutcome:
    """A strategy applied to an eager model: the result and what the report said."""

    model: Any
    eager: Any
    status: str  # "compiled", "fallback" or "failed" (as keisei_core.compile reports)
    reason: str | None
    report: Any


def compile_module() -> Any | None:
    """``keisei_core.compile`` when it is installed (it owns validation and fallback)."""
    try:
        return importlib.import_module("keisei_core.compile")
    except ModuleNotFoundError as exc:
        if exc.name == "keisei_core.compile":
            return None
        raise


def report_field(report: Any, name: str, default: Any = None) -> Any:
    if isinstance(report, Mapping):
        return report.get(name, default)
    return getattr(report, name, default)


def apply_strategy(
    host: PluginHost,
    strategy: str,
    eager: nn.Module,
    example_obs: torch.Tensor,
    *,
    device: str = "cpu",
    fallback: bool = True,
) -> CompileOutcome:
    """Apply ``strategy`` to a private copy of ``eager`` through ``compile_model`` (with
    its validation and fallback), or, where the compile core is absent, call each
    part's ``apply`` in order on a deep copy (no validation: status ``compiled``)."""
    module = compile_module()
    if module is not None and hasattr(module, "compile_model"):
        wanted = {
            "example_obs": example_obs,
            "fallback": fallback,
            "host": host,
            "device": device,
            "batch_sizes": tuple(dict.fromkeys((1, int(example_obs.shape[0])))),
            # The contracts compare acting (eval mode); compile_model validates train mode
            # itself whenever a model is compiled for training. Eval only halves compiles.
            "training": False,
        }
        accepted = _accepted_kwargs(module.compile_model, wanted)
        model, report = module.compile_model(eager, strategy, **accepted)
        status = str(report_field(report, "status", "compiled"))
        return CompileOutcome(model, eager, status, report_field(report, "reason"), report)
    from keisei_core.specs import StrategyContext

    context = StrategyContext(
        device=device,
        example_obs=example_obs,
        batch_sizes=(1, int(example_obs.shape[0])),
        model_name=getattr(eager, "keisei_model_name", None),
        model_options=getattr(eager, "keisei_model_options", None),
    )
    model = copy.deepcopy(eager)
    for part in (p.strip() for p in strategy.split("+")):
        model = host.strategies.get(part).apply(model, context)
    return CompileOutcome(model, eager, "compiled", None, dict(context.notes))


def _accepted_kwargs(function: Any, wanted: Mapping[str, Any]) -> dict[str, Any]:
    import inspect

    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(wanted)
    return {k: v for k, v in wanted.items() if k in parameters}


_DECLINED = re.compile(r"^applying '(?P<strategy>[^']+)' raised (?P<error>[A-Za-z_][A-Za-z0-9_]*)\b")


def _keisei_error_names() -> set[str]:
    from keisei_core.errors import KeiseiError

    names: set[str] = set()
    stack: list[type] = [KeiseiError]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def declined(outcome: CompileOutcome) -> bool:
    """Whether a fallback is the strategy declining the model on purpose: its ``apply``
    raised one of keisei's user-facing errors (a KeiseiError subclass, one clear line,
    e.g. "the model declares no repeated blocks"). Compiler exceptions, a failing first
    call and outputs that differ from eager are not declines."""
    if outcome.status != "fallback" or not outcome.reason:
        return False
    match = _DECLINED.match(str(outcome.reason))
    return match is not None and match.group("error") in _keisei_error_names()


_COMPILED: dict[tuple[Any, ...], CompileOutcome] = {}


def compiled(
    host: PluginHost, case: ModelCase, strategy: str, *, device: str = "cpu", batch_size: int = 4
) -> CompileOutcome:
    """``strategy`` applied to ``case``'s model built from the default seed, once per
    session (eager model and compiled model are both kept)."""
    key = (id(host), case, strategy, device, batch_size)
    outcome = _COMPILED.get(key)
    if outcome is None:
        from keisei_core.introspect import model_shapes
        from keisei_core.observations import make_observations

        eager = build(host, case, device=device)
        channels, board, _ = model_shapes(eager).observation
        example = make_observations(batch_size, channels, board, seed=DEFAULT_SEED, device=device)
        outcome = apply_strategy(host, strategy, eager, example, device=device)
        _COMPILED[key] = outcome
    return outcome


def clear_compiled() -> None:
    """Forget every compiled model of this session (frees their memory)."""
    _COMPILED.clear()


# -- every registered model ------------------------------------------------------------
_REGISTERED: dict[tuple[int, str], list[tuple[ModelCase, str | None]]] = {}


def registered_cases(host: PluginHost, size: str = "auto") -> list[tuple[ModelCase, str | None]]:
    """(case, family) for every registered model, its options chosen by
    :func:`keisei_core.testing.sizing.contract_options` (``auto``: the preset when cheap,
    else shrunk), cheapest first within each family. Sized once per host and size."""
    key = (id(host), size)
    found = _REGISTERED.get(key)
    if found is None:
        from keisei_core.testing.sizing import contract_options

        sized = []
        for registration in host.models:
            spec = registration.spec
            chosen = contract_options(spec, size)
            flops = chosen.cost.flops_per_sample
            order = (spec.family or spec.name, flops if flops is not None else chosen.cost.parameters * 2)
            sized.append((order, ModelCase(spec.name, chosen.overrides, size=chosen.size), spec.family))
        found = [(case, family) for _, case, family in sorted(sized, key=lambda item: item[0])]
        _REGISTERED[key] = found
    return found


# -- covering the model x strategy matrix -------------------------------------------------
def is_cheap_strategy(spec: StrategySpec) -> bool:
    """Transforms (channels-last, bf16, fused ops, checkpointing) and eager apply in well
    under a second; compilers (inductor, AOT, ONNX export) take 10-60 s on a 2-core CPU."""
    return spec.kind == "transform" or spec.name == "eager"


def matrix_plan(
    models: Sequence[tuple[ModelCase, str | None]], strategies: Sequence[StrategySpec], *, full: bool = False
) -> list[tuple[ModelCase, str]]:
    """The (model case, strategy) pairs to check for equivalence: every model under every
    cheap strategy, and the compilers on a cover of the model families
    (:func:`covering_pairs`); ``full`` gives every pair."""
    if full:
        return [(case, spec.name) for case, _ in models for spec in strategies]
    cheap = [spec.name for spec in strategies if is_cheap_strategy(spec)]
    costly = [spec.name for spec in strategies if not is_cheap_strategy(spec)]
    pairs = [(case, name) for case, _ in models for name in cheap]
    return pairs + covering_pairs(models, costly)


def covering_pairs(models: Sequence[tuple[ModelCase, str | None]], strategies: Iterable[str]) -> list[tuple[ModelCase, str]]:
    """Pairs of (model case, strategy) in which every strategy meets at least one model
    family and every family meets at least one strategy, with as few pairs as that
    needs: max(families, strategies). ``models`` are (case, family) with the cheapest
    case of each family first; a model without a family is its own family.

    Compiles cost 10-40 s each on a 2-core CPU, so the full matrix (every model under
    every strategy) is for machines with time (``--keisei-full-matrix``); this cover keeps
    each strategy and each architecture family exercised in the default run.
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
