"""Callables named by import string (``"pkg.module:attr"``), resolved on first call.

A spec may name its builder, strategy or probe function as ``"my_plugin.net:build"``
instead of a function object, so a plugin module needs no lazy wrapper functions to
keep torch out of its import. The host stamps the registering plugin's name on the
reference, so a target that cannot be imported is one error naming the plugin.
Importing this module never imports torch.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import attrs

from keisei_core.errors import PluginError
from keisei_core.oneline import one_line

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_STRING = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")


@attrs.frozen
class ImportString:
    """A callable named ``"module:attr"``; calling it imports the target once."""

    target: str
    plugin: str | None = attrs.field(default=None, eq=False)
    _cache: list[Callable[..., Any]] = attrs.field(factory=list, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not IMPORT_STRING.match(self.target):
            raise ValueError(
                f"import string {self.target!r} must look like 'package.module:function'"
            )

    def owned_by(self, plugin: str) -> ImportString:
        """The same reference, naming ``plugin`` in its errors."""
        return ImportString(self.target, plugin)

    def resolve(self) -> Callable[..., Any]:
        if self._cache:
            return self._cache[0]
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(f"{self._owner()}cannot import {self.target!r}: {one_line(exc)}") from exc
        if not callable(obj):
            raise PluginError(
                f"{self._owner()}{self.target!r} is a {type(obj).__name__}, not a callable"
            )
        self._cache.append(obj)
        return obj  # type: ignore[no-any-return]

    def _owner(self) -> str:
        return f"plugin '{self.plugin}': " if self.plugin else ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:  # child processes re-resolve
        return {"target": self.target, "plugin": self.plugin}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "target", state["target"])
        object.__setattr__(self, "plugin", state["plugin"])
        object.__setattr__(self, "_cache", [])


def callable_ref(value: Callable[..., Any] | str) -> Callable[..., Any]:
    """Spec field converter: an import string becomes an :class:`ImportString`."""
    if isinstance(value, str):
        return ImportString(value)
    return value


def stamp_owner(spec: Any, plugin: str) -> Any:
    """``spec`` with every :class:`ImportString` field naming ``plugin`` in its errors."""
    changes = {
        field.name: value.owned_by(plugin)
        for field in attrs.fields(type(spec))
        if isinstance(value := getattr(spec, field.name), ImportString)
    }
    return attrs.evolve(spec, **changes) if changes else spec
