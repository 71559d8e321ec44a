"""Errors a user can cause. Each is one line that names what and where; the CLI prints it
without a traceback and exits with status 2.

Messages quote user input (names, keys, paths); control characters in it (newlines, ANSI
escape sequences that could clear or rewrite a terminal) are shown escaped, ``\x1b[2J``
as the four characters ``\x1b`` and ``[2J``, by :func:`escape_controls`.
"""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL; tabs too (one line, aligned as written).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a Python escape (``\x1b``, ``\n``)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class KeiseiError(Exception):
    """Base of every user-facing error (bad config, name, file, tensor, checkpoint).

    ``str(error)`` escapes control characters, so a message quoting a hostile name stays
    one printable line wherever it is shown."""

    def __str__(self) -> str:
        return escape_controls(super().__str__())


class UnknownNameError(KeiseiError, LookupError):
    """A model, strategy, probe or plugin name that is not registered."""


class ConfigError(KeiseiError, ValueError):
    """A config file or override that does not fit the typed schema."""


class PluginError(KeiseiError):
    """A plugin failed to import, register or validate (raised in strict mode)."""


class InputError(KeiseiError, ValueError):
    """A tensor given to a model method has the wrong shape, dtype or values."""


class CheckpointError(KeiseiError):
    """A checkpoint file is missing, corrupt, or does not fit the model."""
