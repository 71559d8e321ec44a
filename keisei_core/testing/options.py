"""What a model's typed options allow: bounds read from attrs validators, and small sets.

Model options are frozen attrs classes whose validators state the allowed ranges
(``attrs.validators.ge(1)``, ``le(64)``, ``in_((...))``, ``optional(...)``) and whose
``__attrs_post_init__`` may add cross-field rules (``width % heads == 0``). The kit reads
the field-level rules to draw or shrink values and always asks the real class (through
the core's converter) whether a set is valid, so cross-field rules are respected too.

Importing this module never imports torch or hypothesis.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from keisei_core.errors import ConfigError
from keisei_core.models import options_as_dict, resolve_options
from keisei_core.specs import ModelSpec

SHAPE_OPTIONS: tuple[str, ...] = ("input_channels", "board_size", "num_actions")
"""The conventional options that fix observation and action shapes (see introspect)."""

SMALL_INT = 8
"""Integer options are drawn from / shrunk to at most this (when the model allows it)."""

# Shrinking tries these caps in order for each integer option; the first value the
# options class accepts (cross-field rules included) wins.
_SHRINK_CAPS: tuple[int, ...] = (SMALL_INT, 4, 2, 16, 32, 1, 64)


@attrs.frozen
class FieldRule:
    """One option field: its type and what its validators allow.

    ``low``/``high`` are inclusive bounds (``low_open``/``high_open`` when strict),
    ``choices`` the values of an ``in_`` validator, ``optional`` whether None is allowed.
    """

    name: str
    kind: str  # "int", "float", "bool", "str", "other"
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False


def _flatten_validators(validator: Any) -> tuple[list[Any], bool]:
    """The leaf validators under and_/optional wrappers, and whether None is allowed."""
    leaves: list[Any] = []
    optional = False
    stack = [validator]
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, list | tuple):
            stack.extend(item)
            continue
        inner_and = getattr(item, "_validators", None)
        if inner_and is not None:
            stack.extend(inner_and)
            continue
        if type(item).__name__ == "_OptionalValidator":
            optional = True
            stack.append(item.validator)
            continue
        leaves.append(item)
    return leaves, optional


def _type_kind(annotation: Any, default: Any) -> tuple[str, bool, tuple[Any, ...] | None]:
    """(kind, optional, literal choices) from a resolved annotation (or the default)."""
    optional = False
    choices: tuple[Any, ...] | None = None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        choices = tuple(args)
        annotation = type(args[0]) if args else None
    elif args and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else None
        if typing.get_origin(annotation) is typing.Literal:
            choices = typing.get_args(annotation)
            annotation = type(choices[0]) if choices else None
    if annotation is None or annotation is Any:
        annotation = type(default) if default is not None else None
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation, "other")  # type: ignore[call-overload]
    return kind, optional, choices


def field_rules(options_cls: type, defaults: Mapping[str, Any] | None = None) -> list[FieldRule]:
    """The rules of every field of an attrs options class, with ``defaults`` applied."""
    try:
        hints = typing.get_type_hints(options_cls)
    except Exception:  # unresolvable forward references: fall back to the defaults' types
        hints = {}
    rules = []
    for field in attrs.fields(options_cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else None  # type: ignore[union-attr]
        if defaults and field.name in defaults:
            default = defaults[field.name]
        if default is attrs.NOTHING:
            default = None
        kind, optional, choices = _type_kind(hints.get(field.name, field.type if not isinstance(field.type, str) else None), default)
        low = high = None
        low_open = high_open = False
        leaves, validator_optional = _flatten_validators(field.validator)
        for leaf in leaves:
            op = getattr(leaf, "compare_op", None)
            bound = getattr(leaf, "bound", None)
            if op in (">=", ">") and isinstance(bound, int | float):
                if low is None or bound >= low:
                    low, low_open = bound, op == ">"
            elif op in ("<=", "<") and isinstance(bound, int | float):
                if high is None or bound <= high:
                    high, high_open = bound, op == "<"
            elif type(leaf).__name__ == "_InValidator":
                choices = tuple(leaf.options)
        rules.append(
            FieldRule(
                name=field.name,
                kind=kind,
                default=default,
                low=low,
                high=high,
                low_open=low_open,
                high_open=high_open,
                choices=choices,
                optional=optional or validator_optional,
            )
        )
    return rules


def int_range(rule: FieldRule) -> tuple[int, int | None]:
    """Inclusive integer bounds of an int field (low defaults to 0, high may be None)."""
    low = 0 if rule.low is None else (math.floor(rule.low) + 1 if rule.low_open else math.ceil(rule.low))
    high = None if rule.high is None else (math.ceil(rule.high) - 1 if rule.high_open else math.floor(rule.high))
    return low, high


def is_valid(spec: ModelSpec, overrides: Mapping[str, Any]) -> bool:
    """Whether the options class (validators and cross-field rules) accepts ``overrides``."""
    try:
        resolve_options(spec, overrides)
    except ConfigError:
        return False
    return True


def preset_options(spec: ModelSpec) -> dict[str, Any]:
    """Every option of ``spec`` at its preset value (class defaults + the spec's defaults)."""
    return options_as_dict(resolve_options(spec, {}))


def _candidates(value: int, low: int, high: int | None) -> Iterable[int]:
    seen: set[int] = set()
    for cap in _SHRINK_CAPS:
        candidate = max(low, min(value, cap))
        if high is not None:
            candidate = min(candidate, high)
        if candidate not in seen and candidate <= value:
            seen.add(candidate)
            yield candidate


def shrunk_options(spec: ModelSpec, *, keep: Iterable[str] = SHAPE_OPTIONS) -> dict[str, Any]:
    """The preset with every integer size option reduced, field by field, to the smallest
    of the caps 8, 4, 2, 16, 32, 1, 64 (in that order of preference) that the options
    class accepts; the shape options in ``keep``, floats, strings and booleans stay at the
    preset so the variant (e.g. ``se_kind="film"``) is the one registered.

    Returns only the changed options (the overrides to pass to ``build_model``).
    """
    kept = set(keep)
    overrides: dict[str, Any] = {}
    for rule in field_rules(spec.options, spec.defaults):
        if rule.kind != "int" or rule.name in kept or not isinstance(rule.default, int):
            continue
        if rule.choices is not None:
            continue  # an enumerated int (e.g. a neighbourhood) is a variant, not a size
        low, high = int_range(rule)
        for candidate in _candidates(rule.default, low, high):
            if candidate == rule.default:
                break
            if is_valid(spec, {**overrides, rule.name: candidate}):
                overrides[rule.name] = candidate
                break
    return overrides
