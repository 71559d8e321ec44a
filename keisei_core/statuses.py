"""The statuses keisei records, as string enums: each compares equal to its text
(``PluginStatus.FAILED == "failed"``) and is written as that text to JSON and tables, so
files and the CLI read as before while code names a status it cannot misspell."""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """A str enum whose ``str()`` and ``format()`` are its value (3.10's StrEnum stand-in)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class PluginStatus(TextEnum):
    """What became of a plugin (``keisei plugins``)."""

    LOADED = "loaded"
    FAILED = "failed"
    DISABLED = "disabled"
    NOT_LOADED = "not-loaded"


class CellStatus(TextEnum):
    """What became of one benchmark cell."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
