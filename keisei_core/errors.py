"""Errors a user can cause. Each is one line that names what and where; the CLI prints it
without a traceback and exits with status 2."""

from __future__ import annotations


class KeiseiError(Exception):
    """Base of every user-facing error (bad config, name, file, tensor, checkpoint)."""


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
