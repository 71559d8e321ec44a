"""``auto``: the fastest validated strategy for each batch-size bucket, chosen by measuring.

``compile_model(model, "auto", batch_sizes=(1, 256))`` and ``keisei tune`` run a bounded
search over what the registry holds (never a hard-coded list, so a newly installed
strategy joins by being registered):

1. every registered strategy alone (transforms and compilers, ``eager`` and ``auto``
   excepted) that supports the device and model dtype for inference;
2. compositions ``transform+compiler`` of the parts that passed step 1, ranked by the
   product of their best step-1 speedups, the best ``max_compositions`` of them (the
   rest are listed as ``pruned``; compositions breaking the rules are never tried).

Each candidate goes through ``compile_model`` with every check (eval mode: ``auto``
tunes acting) at the declared batch sizes plus the off-bucket ones, and is timed against
eager at each declared size, interleaved and paired (``speed_seconds`` per size). A
candidate that failed any check is never chosen. Per declared size the winner is the
validated candidate with the highest speedup whose per-pair ratios are above 1 over their
whole interquartile range (verdict ``faster``); eager when none is.

The result is one module (a copy of the eager model, its state_dict the eager one) whose
forward sends each call to the winner of its bucket: the smallest declared size at
least the call's batch size, else the largest. The PPO methods call forward, so they run
the winner's code. In train mode the module runs its own eager forward (gradients must
reach its own parameters; ``auto`` tunes inference). After the module's weights change
(``load_state_dict`` or an optimizer step), the next call hands them to the winners
first, which were checked to follow new weights; a winner that refuses them
(``frozen_weights`` strategies may) is dropped and its bucket runs eager, with a warning.

The decision is cached in ``<cache>/auto/<key>.json``, the key hashing the model (name,
options, class, weights), torch version, device, dtype, CPU model and thread count, the
declared sizes, the search bound and every candidate strategy's identity (name, plugin,
and a hash of its plugin's source files). A later call with the same key re-checks only
the winners (all checks at batch 1 and the off-bucket sizes, no timing) and reuses their
compiled artifacts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.compile.composition import AUTO, CompositionError, build_composition
from keisei_core.compile.hardware import native_precision_problem
from keisei_core.compile.report import CompileReport, SpeedCheck
from keisei_core.compile.wrapping import add_forward_wrapper
from keisei_core.errors import InputError, KeiseiError
from keisei_core.specs import StrategySpec, default_cache_dir

MAX_COMPOSITIONS = 4
TUNE_SPEED_SECONDS = 2.0
CACHE_VERSION = 1
BASELINE = "eager"


@attrs.frozen
class CandidateSpeed:
    """One candidate against eager at one declared batch size."""

    batch_size: int
    speedup: float
    ratio_q1: float | None
    ratio_q3: float | None
    eager_ms: float
    compiled_ms: float
    eager_iqr_ms: float
    compiled_iqr_ms: float
    samples: int
    verdict: str

    @classmethod
    def of(cls, speed: SpeedCheck) -> CandidateSpeed:
        return cls(speed.batch_size, speed.speedup, speed.ratio_q1, speed.ratio_q3, speed.eager_ms,
                   speed.compiled_ms, speed.eager_iqr_ms, speed.compiled_iqr_ms, speed.samples, speed.verdict)


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
    speeds: tuple[CandidateSpeed, ...] = ()

    def speed_at(self, batch_size: int) -> CandidateSpeed | None:
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
        return _bucket_choice(self.choices, batch_size)

    def to_dict(self) -> dict[str, Any]:
        from keisei_core.compile.report import _finite_json
        from keisei_core.config.converter import unstructure

        return _finite_json(unstructure(self))  # type: ignore[no-any-return]


def _bucket_choice(choices: Sequence[Choice], batch_size: int) -> Choice:
    ordered = sorted(choices, key=lambda c: c.batch_size)
    return next((c for c in ordered if c.batch_size >= batch_size), ordered[-1])


# --- the candidate set -------------------------------------------------------------------


def _supported(spec_names: Sequence[StrategySpec], device: str, dtype: str) -> str | None:
    composition = build_composition(spec_names)
    reason = composition.unsupported_reason(device, dtype, training=False)
    if reason is None and device == "cuda" and not torch.cuda.is_available():
        reason = "CUDA is not available on this machine"
    return reason


def single_candidates(host: Any, device: str, dtype: str) -> tuple[list[StrategySpec], list[Candidate]]:
    """Every registered strategy that can run here alone, and the skipped ones with reasons."""
    runnable: list[StrategySpec] = []
    skipped: list[Candidate] = []
    for registration in host.strategies:
        spec = registration.spec
        if spec.name in (BASELINE, AUTO):
            continue
        reason = _supported([spec], device, dtype)
        if reason is None and spec.train_only:
            reason = "changes only training (train_only); auto tunes acting, where it runs eager's code"
        if reason is None:
            reason = native_precision_problem(device, spec.precision)
        if reason is None:
            runnable.append(spec)
        else:
            skipped.append(Candidate(spec.name, 1, "skipped", reason))
    return runnable, skipped


def _best_speedup(candidate: Candidate) -> float:
    return max((s.speedup for s in candidate.speeds if math.isfinite(s.speedup)), default=0.0)


def composed_candidates(
    host: Any, device: str, dtype: str, stage1: Sequence[Candidate], max_compositions: int
) -> tuple[list[str], list[Candidate]]:
    """``transform+compiler`` pairs of validated parts, best expected first; the rest pruned."""
    passed = {c.strategy: c for c in stage1 if c.status == "validated"}
    specs = {r.spec.name: r.spec for r in host.strategies}
    transforms = [n for n in passed if specs[n].kind == "transform"]
    compilers = [n for n in passed if specs[n].kind == "compiler"]
    scored: list[tuple[float, str]] = []
    for transform, compiler in itertools.product(transforms, compilers):
        try:
            composition = build_composition([specs[transform], specs[compiler]])
        except CompositionError:
            continue
        if _supported(list(composition.parts), device, dtype) is not None:
            continue
        scored.append((_best_speedup(passed[transform]) * _best_speedup(passed[compiler]), composition.name))
    scored.sort(key=lambda item: -item[0])
    chosen = [name for _, name in scored[:max_compositions]]
    pruned = [
        Candidate(name, 2, "pruned", f"expected speedup {score:.2f}x ranks {rank} of {len(scored)}; "
                  f"max_compositions={max_compositions}")
        for rank, (score, name) in enumerate(scored, start=1) if rank > max_compositions
    ]
    return chosen, pruned


# --- the dispatching model ---------------------------------------------------------------


def _fingerprint(module: nn.Module) -> tuple[tuple[int, int], ...]:
    return tuple((t.data_ptr(), t._version) for t in itertools.chain(module.parameters(), module.buffers()))


class Dispatch:
    """The winners of one ``auto`` model by declared batch size (None: eager)."""

    def __init__(self, choices: Sequence[Choice], winners: dict[str, nn.Module]) -> None:
        self.choices = tuple(sorted(choices, key=lambda c: c.batch_size))
        self.winners = winners
        self.synced: tuple[tuple[int, int], ...] | None = None
        self.dropped: dict[str, str] = {}
        self.calls: dict[str, int] = {}

    def winner(self, batch_size: int) -> tuple[str, nn.Module | None]:
        name = _bucket_choice(self.choices, batch_size).strategy
        return name, self.winners.get(name)

    def sync(self, module: nn.Module) -> None:
        current = _fingerprint(module)
        if current == self.synced:
            return
        state = module.state_dict()
        for _name, winner in list(self.winners.items()):
            if self.synced is not None:
                winner.load_state_dict(state)
        self.synced = current

    def __deepcopy__(self, memo: dict[int, Any]) -> Dispatch:
        # A copy of an auto model is the eager model with the same weights and choices;
        # compiled winners do not deep-copy into compiled modules (torch drops compiled calls).
        twin = Dispatch(self.choices, {})
        twin.dropped = {name: "not copied" for name in self.winners}
        return twin


def auto_forward(module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, dispatch: Dispatch, **kwargs: Any) -> Any:
    if module.training or args or kwargs or not isinstance(obs, torch.Tensor) or obs.dim() == 0:
        return inner(obs, *args, **kwargs)
    name, winner = dispatch.winner(int(obs.shape[0]))
    if winner is None:
        return inner(obs)
    try:
        dispatch.sync(module)
        result = winner(obs)
    except KeiseiError as exc:
        # A frozen-weights winner may refuse new weights (validated to refuse, never to
        # answer stale); its bucket runs eager from now on.
        dispatch.winners.pop(name, None)
        dispatch.dropped[name] = str(exc)
        warnings.warn(f"auto: '{name}' refused the new weights ({exc}); its batch sizes run eager", stacklevel=2)
        return inner(obs)
    dispatch.calls[name] = dispatch.calls.get(name, 0) + 1
    return result


def dispatching_model(eager: nn.Module, choices: Sequence[Choice], winners: dict[str, nn.Module]) -> nn.Module:
    """A copy of ``eager`` whose eval-mode forward runs each bucket's winner."""
    model = copy.deepcopy(eager)
    for winner in winners.values():
        winner.eval()  # winners run acting calls only (train mode stays with the eager forward)
    dispatch = Dispatch(choices, winners)
    dispatch.synced = _fingerprint(model)
    add_forward_wrapper(model, functools.partial(auto_forward, dispatch=dispatch))
    model.keisei_auto_dispatch = dispatch  # type: ignore[assignment]
    return model


# --- the cache ---------------------------------------------------------------------------


def _source_hash(function: Any) -> str:
    """Hash of the files of the package (or module) that defines ``function``."""
    digest = hashlib.sha256()
    try:
        module = inspect.getmodule(function)
        source = Path(inspect.getsourcefile(function) or "")
    except (TypeError, OSError):
        return "unknown"
    root_name = (getattr(module, "__name__", "") or "").split(".")[0]
    files = [source]
    if module is not None and root_name and "." in module.__name__:
        root = source
        for _ in module.__name__.split(".")[1:]:
            root = root.parent
        files = sorted(root.rglob("*.py"))
    for path in files:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(str(path).encode())
    return digest.hexdigest()[:16]


def candidate_identities(host: Any) -> list[dict[str, Any]]:
    out = []
    for registration in host.strategies:
        spec = registration.spec
        if spec.name in (BASELINE, AUTO):
            continue
        out.append({
            "name": spec.name, "plugin": registration.plugin, "distribution": registration.distribution,
            "apply": f"{getattr(spec.apply, '__module__', '?')}.{getattr(spec.apply, '__qualname__', '?')}",
            "source": _source_hash(spec.apply),
        })
    return sorted(out, key=lambda item: item["name"])


def tune_key(model: nn.Module, host: Any, *, device: str, dtype: str, batch_sizes: Sequence[int],
             max_compositions: int, seed: int) -> str:
    from keisei_core.bench.manifest import cpu_model
    from keisei_core.compile.artifacts import weights_hash

    recipe = {
        "version": CACHE_VERSION,
        "model": getattr(model, "keisei_model_name", None),
        "options": dict(getattr(model, "keisei_model_options", None) or {}),
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights": weights_hash(model),
        "torch": torch.__version__,
        "device": device,
        "dtype": dtype,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "batch_sizes": list(batch_sizes),
        "max_compositions": max_compositions,
        "seed": seed,
        "candidates": candidate_identities(host),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _cache_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "auto" / f"{key}.json"


def _load_decision(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    return data


# --- tuning ------------------------------------------------------------------------------


def _candidate_from(report: CompileReport, stage: int) -> Candidate:
    status = "validated" if report.status == "compiled" else report.status
    return Candidate(
        report.strategy, stage, status, report.reason, report.compile_seconds, report.validation_seconds,
        report.total_seconds, report.warm_start, tuple(CandidateSpeed.of(s) for s in report.speeds),
    )


def choose(candidates: Sequence[Candidate], batch_sizes: Sequence[int]) -> tuple[Choice, ...]:
    """Per declared size, the validated candidate with the highest speedup among those
    clearly faster than eager (verdict ``faster``); eager (speedup 1) when none is."""
    choices = []
    for size in batch_sizes:
        best: tuple[float, str] | None = None
        for candidate in candidates:
            speed = candidate.speed_at(size)
            if candidate.status != "validated" or speed is None or speed.verdict != "faster":
                continue
            if best is None or speed.speedup > best[0]:
                best = (speed.speedup, candidate.strategy)
        choices.append(Choice(size, best[1], best[0]) if best else Choice(size, BASELINE, 1.0))
    return tuple(choices)


def tune(
    model: nn.Module,
    *,
    batch_sizes: Sequence[int],
    host: Any = None,
    device: str | None = None,
    dtype: str | None = None,
    example_obs: torch.Tensor | None = None,
    tolerances: Any = None,
    seed: int = 0,
    max_compositions: int = MAX_COMPOSITIONS,
    speed_seconds: float = TUNE_SPEED_SECONDS,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    extra_batch_sizes: Sequence[int] | None = None,
    sampling_draws: int | None = None,
    progress: Any = None,
) -> tuple[nn.Module, TuneReport]:
    """Search, validate, time and choose; returns the dispatching model and the report."""
    from keisei_core.bench.manifest import cpu_model
    from keisei_core.compile.engine import _check_batch_sizes, _model_place, compile_model

    started = time.perf_counter()
    if host is None:
        from keisei_core.plugins import get_host

        host = get_host()
    sizes = _check_batch_sizes(batch_sizes)
    if isinstance(max_compositions, bool) or not isinstance(max_compositions, int) or max_compositions < 0:
        raise InputError(f"max_compositions must be an integer >= 0, got {max_compositions!r}")
    own_device, own_dtype = _model_place(model)
    device, dtype = device or own_device, dtype or own_dtype
    eager = model
    if (device, dtype) != (own_device, own_dtype):
        eager = copy.deepcopy(model).to(device=device, dtype=getattr(torch, dtype))
    options: dict[str, Any] = {"example_obs": example_obs, "tolerances": tolerances, "host": host, "seed": seed,
                               "device": device, "dtype": dtype, "training": False}
    if extra_batch_sizes is not None:
        options["extra_batch_sizes"] = extra_batch_sizes
    if sampling_draws is not None:
        options["sampling_draws"] = sampling_draws
    say = progress or (lambda text: None)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = tune_key(eager, host, device=device, dtype=dtype, batch_sizes=sizes,
                   max_compositions=max_compositions, seed=seed)
    path = _cache_file(folder, key)
    notes: dict[str, Any] = {}
    base: dict[str, Any] = {"model": getattr(model, "keisei_model_name", None), "device": device, "dtype": dtype,
            "batch_sizes": sizes, "key": key, "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "torch_version": torch.__version__}

    if use_cache:
        decision = _load_decision(path)
        if decision is not None:
            from keisei_core.config.converter import converter

            choices = tuple(converter.structure(c, Choice) for c in decision["choices"])
            winners: dict[str, nn.Module] = {}
            failed = None
            for name in sorted({c.strategy for c in choices} - {BASELINE}):
                say(f"cached decision: re-checking {name}")
                compiled, recheck = compile_model(eager, name, batch_sizes=(1,), speed_seconds=0.0, **options)
                if recheck.status != "compiled":
                    failed = f"cached winner '{name}' failed its re-check: {recheck.reason}"
                    break
                winners[name] = compiled
            if failed is None:
                cached = tuple(converter.structure(c, Candidate) for c in decision["candidates"])
                reused = TuneReport(
                    choices=choices, candidates=cached, cache_path=str(path), reused=True,
                    tune_seconds=time.perf_counter() - started,
                    original_tune_seconds=float(decision.get("tune_seconds", math.nan)), notes=notes, **base,
                )
                return dispatching_model(eager, choices, winners), reused
            notes["cache_rejected"] = failed

    candidates: list[Candidate] = []
    compiled_by_name: dict[str, nn.Module] = {}

    def attempt(name: str, stage: int) -> None:
        say(f"stage {stage}: {name}")
        compiled, checked = compile_model(eager, name, batch_sizes=sizes, speed_seconds=speed_seconds, **options)
        candidate = _candidate_from(checked, stage)
        candidates.append(candidate)
        if candidate.status == "validated":
            compiled_by_name[name] = compiled
        timed = ", ".join(f"b{sp.batch_size} {sp.speedup:.2f}x ({sp.verdict})" for sp in candidate.speeds)
        seconds = f" [compile {candidate.compile_seconds or 0:.1f} s, total {candidate.total_seconds or 0:.1f} s]"
        say(f"  {name}: {candidate.status}" + (f": {candidate.reason}" if candidate.reason else "")
            + (f"; {timed}" if timed else "") + seconds)

    runnable, skipped = single_candidates(host, device, dtype)
    candidates.extend(skipped)
    for spec in runnable:
        attempt(spec.name, 1)
    pairs, pruned = composed_candidates(host, device, dtype, candidates, max_compositions)
    for name in pairs:
        attempt(name, 2)
    candidates.extend(pruned)
    choices = choose(candidates, sizes)
    winners = {c.strategy: compiled_by_name[c.strategy] for c in choices if c.strategy != BASELINE}
    compiled_by_name.clear()
    elapsed = time.perf_counter() - started
    report = TuneReport(
        choices=choices, candidates=tuple(candidates), cache_path=str(path) if use_cache else None, reused=False,
        tune_seconds=elapsed, original_tune_seconds=elapsed, notes=notes, **base,
    )
    if use_cache:
        from keisei_core.atomic_files import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        data = report.to_dict()
        data.update({"version": CACHE_VERSION, "tune_seconds": elapsed})
        write_json_atomic(path, data)
    return dispatching_model(eager, choices, winners), report


def compile_auto(
    model: nn.Module,
    *,
    batch_sizes: Sequence[int],
    example_obs: torch.Tensor | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tolerances: Any = None,
    host: Any = None,
    seed: int = 0,
    extra_batch_sizes: Sequence[int] | None = None,
    sampling_draws: int | None = None,
    speed_seconds: float = TUNE_SPEED_SECONDS,
) -> tuple[nn.Module, CompileReport]:
    """``compile_model(model, "auto", ...)``: :func:`tune`, reported as a CompileReport."""
    tuned, tuning = tune(
        model, batch_sizes=batch_sizes, host=host, device=device, dtype=dtype, example_obs=example_obs,
        tolerances=tolerances, seed=seed, extra_batch_sizes=extra_batch_sizes, sampling_draws=sampling_draws,
        speed_seconds=speed_seconds if speed_seconds > 0 else TUNE_SPEED_SECONDS,
    )
    text = ", ".join(f"batch {c.batch_size}: {c.strategy} ({c.speedup:.2f}x)" for c in tuning.choices)
    by_name = {c.strategy: c for c in tuning.candidates}
    speeds = []
    for choice in tuning.choices:
        found = by_name[choice.strategy].speed_at(choice.batch_size) if choice.strategy in by_name else None
        if found is not None:
            speeds.append(SpeedCheck(found.batch_size, found.samples, found.eager_ms, found.compiled_ms,
                                     found.eager_iqr_ms, found.compiled_iqr_ms, None, found.ratio_q1,
                                     found.ratio_q3))
    report = CompileReport(
        strategy=AUTO, status="compiled", model=tuning.model,
        model_options=dict(getattr(model, "keisei_model_options", None) or {}), device=tuning.device,
        dtype=tuning.dtype, precision=tuning.dtype, batch_sizes=tuning.batch_sizes,
        declared_batch_sizes=tuning.batch_sizes, modes=("eval",), total_seconds=tuning.tune_seconds,
        warm_start=tuning.reused, torch_version=tuning.torch_version,
        notes={"auto_choices": text, "auto_reused": tuning.reused, "auto_key": tuning.key,
               "auto_cache": tuning.cache_path or ""},
        auto=tuning.to_dict(), speeds=tuple(speeds),
        speed=max(speeds, key=lambda s: s.batch_size) if speeds else None,
    )
    return tuned, report
