"""``--set a.b=c`` overrides: the value is parsed as a TOML value (``3``, ``0.5``, ``true``,
``[1, 64]``, ``"text"``); anything else that is not valid TOML is taken as a plain string,
except what looks like an array or an inline table (``[...]``, ``{...}``): that is an
error, since the usual cause is a shell that ate the quotes around strings inside it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from keisei_core.config.files import check_depth, tomllib
from keisei_core.errors import ConfigError

_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_value(text: str) -> Any:
    """The TOML value ``text``, or ``text`` itself when it is not TOML (``--set name=run1``).

    Raises ValueError for an invalid array or inline table: taken as a string it would
    reach a list-typed key as one string."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except RecursionError:
        raise ConfigError(f"--set value {text[:40]!r}: values nested more than 32 levels deep (too deep for the TOML parser)") from None
    except tomllib.TOMLDecodeError as exc:
        if text.startswith(("[", "{")):
            raise ValueError(f"not a valid TOML array or table ({exc})") from None
        return text
    check_depth(value, f"--set value {text[:40]!r}")
    return value


def parse_override(item: str) -> tuple[list[str | int], Any]:
    """``models.0.options.depth=3`` -> (['models', 0, 'options', 'depth'], 3)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set batch_sizes=[1,64]")
    path: list[str | int] = []
    for part in key.split("."):
        if part.isdigit():
            path.append(int(part))
        elif _KEY.match(part):
            path.append(part)
        else:
            raise ConfigError(f"--set {item!r}: invalid key segment {part!r}")
    try:
        return path, parse_value(value.strip())
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(
            f"--set {item!r}: {exc}; strings inside need double quotes, and the whole argument "
            f"single quotes for the shell, e.g. --set 'strategies=[\"eager\",\"inductor\"]'"
        ) from None


def apply_overrides(data: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """Apply overrides to raw config data (before it is typed), creating tables as needed."""
    for item in items:
        path, value = parse_override(item)
        node: Any = data
        for depth, part in enumerate(path[:-1]):
            where = ".".join(str(p) for p in path[: depth + 1])
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError(f"--set {item!r}: {where} does not exist")
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {item!r}: {where} is not a table")
                node = node.setdefault(part, {})
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError(f"--set {item!r}: index {last} does not exist")
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {item!r}: cannot set a key inside a {type(node).__name__}")
    return data
