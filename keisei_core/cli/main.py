"""``keisei``: entry point. Commands live one per module in ``keisei_core.cli.commands``;
each defines ``NAME``, ``HELP``, ``configure(parser)`` and ``run(ctx) -> int``. Plugins add
commands through the ``keisei_register_commands`` hook; plugins are loaded for that only
when the command named is not a built-in one (or for ``--help``), so the built-in
commands start as fast as before."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from keisei_core import __version__
from keisei_core.cli import commands as commands_package
from keisei_core.cli.context import CliContext
from keisei_core.errors import KeiseiError

EXIT_USAGE = 2


def command_modules() -> list[ModuleType]:
    modules = []
    for info in sorted(pkgutil.iter_modules(commands_package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"{commands_package.__name__}.{info.name}"))
    return modules


def _add_plugin_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # Defined on the top parser and on each command, so `keisei -p x.py models` and
    # `keisei models -p x.py` both work; SUPPRESS keeps the sub-parser from resetting them.
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "-p",
        "--plugin",
        dest="plugins",
        action="append",
        default=[] if top_level else argparse.SUPPRESS,
        metavar="PLUGIN",
        help="load a local plugin: a .py file or an importable module (repeatable)",
    )
    parser.add_argument(
        "--strict-plugins",
        action="store_true",
        default=False if top_level else default,
        help="turn any plugin failure into an error (also KEISEI_STRICT_PLUGINS=1)",
    )


def build_parser(plugin_commands: Sequence[Any] = ()) -> argparse.ArgumentParser:
    """The ``keisei`` parser: the built-in commands, then ``plugin_commands``
    (registrations of :class:`~keisei_core.commands_spec.CommandSpec`)."""
    parser = argparse.ArgumentParser(
        prog="keisei",
        description="Plugin-registry research platform for actor-critic networks of board-game agents.",
    )
    parser.add_argument("--version", action="version", version=f"keisei {__version__}")
    _add_plugin_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        _add_plugin_options(command, top_level=False)
        module.configure(command)
        command.set_defaults(_run=module.run)
    for registration in plugin_commands:
        spec = registration.spec
        command = sub.add_parser(spec.name, help=spec.help, description=spec.help)
        _add_plugin_options(command, top_level=False)
        spec.configure(command)
        command.set_defaults(_run=spec.run)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (skipping the global options and their values)."""
    pre = argparse.ArgumentParser(add_help=False)
    _add_plugin_options(pre, top_level=True)
    _known, rest = pre.parse_known_args(list(argv))
    return next((word for word in rest if not word.startswith("-")), None)


def _plugin_commands(argv: Sequence[str], host_holder: list[Any]) -> list[Any]:
    """Plugin command registrations, loading the plugins only when they are needed."""
    builtin = {module.NAME for module in command_modules()}
    word = _command_word(argv)
    wants_help = word is None and any(a in ("-h", "--help") for a in argv)
    if (word is None or word in builtin) and not wants_help:
        return []
    from keisei_core.plugins import configure_host

    pre = argparse.ArgumentParser(add_help=False)
    _add_plugin_options(pre, top_level=True)
    known, _ = pre.parse_known_args(list(argv))
    host = configure_host(known.plugins, strict=True if known.strict_plugins else None).load()
    host_holder.append(host)
    usable = []
    for registration in host.commands:
        if registration.name in builtin:
            print(
                f"keisei: warning: plugin '{registration.plugin}' registers the command "
                f"'{registration.name}', which is a built-in command; not added",
                file=sys.stderr,
            )
            continue
        usable.append(registration)
    return usable


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    host_holder: list[Any] = []
    try:
        parser = build_parser(_plugin_commands(argv, host_holder))
    except KeiseiError as exc:  # strict plugin loading
        print(f"keisei: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(CliContext(args, host_holder[0] if host_holder else None)) or 0)
    except KeiseiError as exc:
        print(f"keisei: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        from keisei_core.bench.engine import Terminated

        terminated = isinstance(exc, Terminated)
        print(f"keisei: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
