"""``keisei``: entry point. Commands live one per module in ``keisei_core.cli.commands``;
each defines ``NAME``, ``HELP``, ``configure(parser)`` and ``run(ctx) -> int``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

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


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(CliContext(args)) or 0)
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
