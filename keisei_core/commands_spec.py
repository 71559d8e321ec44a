"""``CommandSpec``: a ``keisei`` subcommand contributed by a plugin. Never imports torch."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from keisei_core.import_strings import callable_ref
from keisei_core.specs import check_name


class CommandContext(Protocol):
    """What a plugin command's ``run`` receives: the parsed arguments and the host."""

    args: argparse.Namespace

    def host(self, extra_plugins: Any = ()) -> Any:
        """The loaded plugin host, with the run's ``-p`` plugins."""


def _no_options(_parser: argparse.ArgumentParser) -> None:
    """Default ``configure``: the command takes only the common ``-p`` options."""


def _valid_command_name(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    check_name("command", value)


def _is_callable(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{attribute.name} must be callable, got {type(value).__name__}")


@attrs.frozen
class CommandSpec:
    """``keisei NAME ...``: ``configure(parser)`` adds its arguments (argparse), ``run(ctx)``
    runs it and returns the exit status; a :class:`~keisei_core.errors.KeiseiError` it raises
    is printed as one line with status 2, like the built-in commands. ``configure`` and
    ``run`` may be import strings (``"my_plugin.cli:run"``), so the plugin module stays light.
    A name that is already a built-in command is not added (the CLI warns naming the plugin).
    """

    name: str = attrs.field(validator=_valid_command_name)
    run: Callable[[CommandContext], int] = attrs.field(converter=callable_ref, validator=_is_callable)
    help: str = ""
    configure: Callable[[argparse.ArgumentParser], None] = attrs.field(
        default=_no_options, converter=callable_ref, validator=_is_callable
    )

    @property
    def description(self) -> str:  # the listing's column
        return self.help
