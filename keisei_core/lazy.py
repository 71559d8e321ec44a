"""Module attributes imported on first access (PEP 562), for packages whose public names
include torch-dependent ones while importing the package must stay light."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(
    namespace: dict[str, Any],
    table: Mapping[str, str],
    public: Sequence[str],
    renamed: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module whose globals are ``namespace``.

    ``table`` maps a public name to the module that defines it (under the name
    ``renamed[name]`` when given); the first access imports it and caches it in the
    module's globals, so later accesses are plain lookups.
    """
    module_name = namespace["__name__"]
    aliases = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), aliases.get(name, name))
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
