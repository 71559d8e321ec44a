"""Typed specs that plugins hand to ``register``. Importing this module never imports torch.

The callables a spec names (``ModelSpec.build``, ``StrategySpec.apply``, ``ProbeSpec.run``)
may be import strings, ``"my_plugin.network:build"``, imported the first time they are
called (:mod:`keisei_core.import_strings`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.import_strings import callable_ref

if TYPE_CHECKING:
    import torch
    from torch import nn

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
DEVICES = frozenset({"cpu", "cuda"})
DTYPES = frozenset({"float32", "bfloat16", "float16"})
QUANTIZED_PRECISIONS = frozenset({"int8"})
"""Precisions a strategy may compute in that are no model dtype: quantized networks are
validated at the policy level (keisei_core.compile.policy_checks), not output by output."""
PRECISIONS = DTYPES | QUANTIZED_PRECISIONS


def check_name(kind: str, name: object) -> str:
    """Names are lower-case words joined by '-', '_' or '.'; '+' is reserved for composition."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use lower-case letters, digits, '-', '_' or '.'"
        )
    return name


def _valid_name(kind: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def validator(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
        check_name(kind, value)

    return validator


def _is_callable(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{attribute.name} must be callable, got {type(value).__name__}")


def _is_attrs_class(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, type) and attrs.has(value)):
        raise TypeError(f"{attribute.name} must be an attrs class, got {value!r}")


def _names_set(values: Iterable[str]) -> frozenset[str]:
    """Typed converter so plugins may pass any iterable of names (mypy sees frozenset[str])."""
    return frozenset(values)


def _subset_of(allowed: frozenset[str]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def validator(_instance: Any, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
        unknown = set(value) - allowed
        if unknown or not value:
            raise ValueError(
                f"{attribute.name} must be a non-empty subset of {sorted(allowed)}, got {sorted(value)}"
            )

    return validator


@attrs.frozen
class NoOptions:
    """Options class for models that take none."""


@attrs.frozen
class ModelSpec:
    """A model architecture.

    ``build(options) -> nn.Module`` receives an instance of ``options`` (an attrs class
    whose fields are the model's typed options, with validators for ranges) and returns a
    module whose ``forward(obs)`` gives ``(policy_logits (B, A), value (B,))`` and which
    has the two PPO methods (inherit :class:`keisei_core.ActorCriticMixin`).
    ``defaults`` overrides option defaults, which is how presets share one builder.
    ``checkpoint_architectures`` are the architecture tags of foreign training checkpoints
    (Keisei 2026's ``save_checkpoint`` writes ``"architecture": "se_resnet"``) whose weights
    this model takes: loading checks the tag, and ``keisei info --weights`` picks by it.
    """

    name: str = attrs.field(validator=_valid_name("model"))
    build: Callable[[Any], nn.Module] = attrs.field(converter=callable_ref, validator=_is_callable)
    options: type = attrs.field(default=NoOptions, validator=_is_attrs_class)
    description: str = ""
    defaults: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    family: str | None = None
    checkpoint_architectures: frozenset[str] = attrs.field(factory=frozenset, converter=_names_set)


@attrs.define
class StrategyContext:
    """What a strategy knows about the cell it compiles for.

    ``record(key, value)`` notes facts for the compile report (e.g. a warm-start hit).
    ``composition`` names every strategy of the composed strategy being applied, in
    order (artifact caches key on it: ``bf16+aot-inductor`` is not ``aot-inductor``).
    """

    device: str = "cpu"
    dtype: str = "float32"
    example_obs: torch.Tensor | None = None
    batch_sizes: tuple[int, ...] = (1,)
    training: bool = False
    cache_dir: Path = attrs.field(factory=lambda: default_cache_dir())
    model_name: str | None = None
    model_options: Mapping[str, Any] | None = None
    notes: dict[str, Any] = attrs.field(factory=dict)
    composition: tuple[str, ...] = ()

    def record(self, key: str, value: Any) -> None:
        self.notes[key] = value


def default_cache_dir() -> Path:
    """Compiled artifacts live here; ``KEISEI_CACHE_DIR`` moves them."""
    import os

    root = os.environ.get("KEISEI_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "keisei"
    )
    return Path(root)


@attrs.frozen
class StrategySpec:
    """A compilation strategy or model transform.

    ``apply(model, context) -> model`` receives a private copy of the eager model and
    returns something that satisfies the actor-critic interface with the same state_dict
    keys. ``kind`` is ``"transform"`` (channels-last, bf16, fused ops: composable, any
    number) or ``"compiler"`` (inductor, onnxruntime: at most one, last in a composition).
    ``precision`` names the dtype the strategy computes in when it lowers precision, so
    validation uses that dtype's tolerance; a quantized precision (``"int8"``) selects the
    policy-level validation and its thresholds instead.

    ``frozen_weights``: the compiled code holds its own copy of the weights (constants
    folded into generated code, an exported package or session), so it cannot follow a
    change made to the parameters in place (an optimizer step). It must still follow
    ``load_state_dict`` -- by rebuilding for the new weights or by refusing to run with
    them (a :class:`~keisei_core.errors.KeiseiError` on the next call) -- and
    ``compile_model`` checks that it does. Strategies that leave this False must follow
    in-place changes too (checked the same way); training strategies are checked after
    one optimizer step.

    ``train_only``: the strategy changes only the training computation (activation
    checkpointing: eval mode runs the same code as eager), so ``auto``, which tunes
    acting, skips it instead of validating and timing a copy of eager.
    """

    name: str = attrs.field(validator=_valid_name("strategy"))
    apply: Callable[[nn.Module, StrategyContext], nn.Module] = attrs.field(
        converter=callable_ref, validator=_is_callable
    )
    description: str = ""
    kind: str = attrs.field(default="compiler", validator=attrs.validators.in_(("transform", "compiler")))
    devices: frozenset[str] = attrs.field(
        default=DEVICES, converter=_names_set, validator=_subset_of(DEVICES)
    )
    dtypes: frozenset[str] = attrs.field(
        default=DTYPES, converter=_names_set, validator=_subset_of(DTYPES)
    )
    training: bool = True
    baseline: bool = False  # the strategy every comparison is against (the built-in eager)
    precision: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(sorted(PRECISIONS)))
    )
    frozen_weights: bool = False
    train_only: bool = False


@attrs.frozen
class ProbeSpec:
    """A benchmark probe: ``run(context) -> result`` measures one thing about a cell
    (model, strategy, batch size, device). See :mod:`keisei_core.bench` for the context
    and result types.

    ``options`` is the attrs class of the probe's ``[probe_options.<name>]`` table: the
    table is structured against it when the config is checked, so an unknown key or a bad
    value is one error before any cell runs. ``None`` (the default): the probe takes no
    options, and a non-empty table for it is an error."""

    name: str = attrs.field(validator=_valid_name("probe"))
    run: Callable[[Any], Any] = attrs.field(converter=callable_ref, validator=_is_callable)
    description: str = ""
    unit: str = ""
    devices: frozenset[str] = attrs.field(
        default=DEVICES, converter=_names_set, validator=_subset_of(DEVICES)
    )
    needs_training: bool = False
    higher_is_better: bool = True
    options: type | None = attrs.field(
        default=None, validator=attrs.validators.optional(_is_attrs_class)
    )
