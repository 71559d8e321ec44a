"""Name -> spec registries. The core, not the plugins, owns naming and collisions."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Generic, TypeVar

import attrs

from keisei_core.errors import UnknownNameError
from keisei_core.suggest import unknown_name_message

S = TypeVar("S")


@attrs.frozen
class Registration(Generic[S]):
    """A spec together with the plugin (and distribution) that registered it."""

    spec: S
    plugin: str
    distribution: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name  # type: ignore[attr-defined, no-any-return]


class Registry(Generic[S]):
    """Registered specs of one kind (``model``, ``strategy`` or ``probe``), by name."""

    def __init__(self, kind: str, spec_type: type[S]) -> None:
        self.kind = kind
        self.spec_type = spec_type
        self._entries: dict[str, Registration[S]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[S]]:
        return iter(sorted(self._entries.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def registration(self, name: str) -> Registration[S]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._entries)) from None

    def get(self, name: str) -> S:
        """The spec registered as ``name``; an unknown name suggests the closest ones."""
        return self.registration(name).spec

    def match(self, pattern: str | None = None) -> list[Registration[S]]:
        """Registrations whose name matches a shell-style pattern (all when None).

        A pattern without wildcards also matches names that contain it.
        """
        if not pattern:
            return list(self)
        if not any(ch in pattern for ch in "*?["):
            pattern = f"*{pattern}*"
        return [r for r in self if fnmatch.fnmatchcase(r.name, pattern)]

    def owner_of(self, name: str) -> Registration[S] | None:
        return self._entries.get(name)

    def add(self, registration: Registration[S]) -> None:
        """Add a registration whose name the caller has already checked is free."""
        self._entries[registration.name] = registration
