"""The one cattrs converter for (un)structuring configs, option tables, reports and results.

Scalars are strict (no '3' -> 3 or True -> 1 coercion): a config value of the wrong type
is an error naming its key path, never a silent conversion.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import cattrs
from cattrs.cols import is_mutable_sequence, list_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from keisei_core.errors import ConfigError
from keisei_core.oneline import flatten

T = TypeVar("T")


def _strict_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _strict_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _strict_list_factory(type_: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Lists take lists (TOML arrays) only: cattrs would iterate a string into a list of
    its characters (strategies = "eager" -> ['e', 'a', 'g', 'e', 'r'])."""
    structure_items = list_structure_factory(type_, conv)

    def structure_list(value: Any, cl: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {value!r}")
        return structure_items(value, cl)

    return structure_list


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(Path, lambda v, _t: Path(_strict_str(v, str)))
    conv.register_structure_hook_factory(is_mutable_sequence, _strict_list_factory)
    conv.register_unstructure_hook(Path, str)
    return conv


converter = make_converter()

_LITERAL_MISMATCH = re.compile(r"^(?P<value>.*) not in literal typing\.Literal\[(?P<choices>.*)\]$", re.S)
_ATTRS_VALIDATOR = re.compile(r"^'(?P<field>[A-Za-z_][A-Za-z0-9_]*)' (?P<rest>.*)$", re.S)


def _messages(exc: BaseException, path: str) -> list[str]:
    """Flatten cattrs' exception groups into ``path: message`` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        # repr() for keys that would not read as one plain word (empty, spaces, newlines)
        keys = ", ".join(k if k.isprintable() and k.strip() == k and k else repr(k) for k in sorted(exc.extra_fields))
        return [f"{path}: unknown key(s) {keys}" if path else f"unknown key(s) {keys}"]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        out: list[str] = []
        errors, _ = exc.group_exceptions()
        for inner, note in errors:
            name = getattr(note, "name", None)
            if name is not None:
                sub = f"{path}.{name}" if path else str(name)
            else:
                sub = f"{path}[{getattr(note, 'index', '?')}]"
            if isinstance(inner, KeyError) and not isinstance(inner, ForbiddenExtraKeysError):
                out.append(f"{sub}: required key missing")
            else:
                out.extend(_messages(inner, sub))
        for inner in exc.exceptions:
            if not any(inner is e for e, _ in errors):
                out.extend(_messages(inner, path))
        return out
    raw = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = flatten(raw) or type(exc).__name__
    if "is not iterable" in text or "not subscriptable" in text or "object has no attribute 'keys'" in text:
        return [f"{path or 'value'}: expected a table"]
    literal = _LITERAL_MISMATCH.match(text)
    if literal:  # cattrs: "float64 not in literal typing.Literal['float32', 'bfloat16']"
        choices = literal.group("choices")
        return [f"{path or 'value'}: must be one of {choices} (got {literal.group('value')!r})"]
    match = _ATTRS_VALIDATOR.match(text)
    if match:  # attrs validator messages look like "'depth' must be >= 0: -1"
        rest = match.group("rest")
        head, sep, got = rest.rpartition(": ")
        detail = f"{head} (got {got})" if sep and head else rest
        field = match.group("field")
        return [f"{path}.{field}: {detail}" if path else f"{field}: {detail}"]
    if "invalid value for type" in text or text.startswith("Unable to structure"):
        text = f"wrong type ({text})"
    return [f"{path}: {text}" if path else text]


def structure(data: Any, cls: type[T], where: str, path: str = "") -> T:
    """Structure ``data`` into ``cls``; any problem is one :class:`ConfigError` line
    ``where: key.path: what was expected``."""
    if attrs_has(cls) and not isinstance(data, dict):
        raise ConfigError(f"{where}: {path or 'value'}: expected a table, got {type(data).__name__}")
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError, ValueError, TypeError) as exc:
        lines = [f"{where}: {line}" for line in _messages(exc, path)]
        extra = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
        raise ConfigError(lines[0] + extra) from None


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def problems(exc: BaseException, path: str = "") -> list[str]:
    """What ``exc`` (from structuring, cattrs' exception groups included) says is wrong,
    as ``path: message`` lines."""
    return _messages(exc, path)


def with_defaults(data: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (a table) with each key of ``defaults`` that is missing or null
    set to a copy of its default: what files written before a field existed, or without
    it, mean. For structure hooks of file formats that read old files."""
    if not isinstance(data, Mapping):
        raise TypeError(f"expected a table, got {type(data).__name__}")
    filled = dict(data)
    for key, default in defaults.items():
        if filled.get(key) is None:
            filled[key] = copy.copy(default)
    return filled


def attrs_has(cls: Any) -> bool:
    import attrs

    return isinstance(cls, type) and attrs.has(cls)
