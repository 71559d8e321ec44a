"""``keisei new-plugin NAME``: write a complete plugin distribution to start from."""

from __future__ import annotations

import argparse
from pathlib import Path

from keisei_core.cli.context import CliContext

NAME = "new-plugin"
HELP = "write a new plugin distribution (pyproject, package, README, contract tests) from a template"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", help="name of the model, strategy or probe it registers (also the plugin name), e.g. my-net"
    )
    parser.add_argument(
        "--dir", dest="directory", default=".", metavar="DIR",
        help="folder to create keisei-plugin-NAME in (default: the current folder); never overwritten",
    )
    parser.add_argument(
        "--kind", choices=("model", "strategy", "probe"), default="model",
        help="what the plugin registers (default: model)",
    )


def run(ctx: CliContext) -> int:
    from keisei_core.scaffold import PluginNames, ScaffoldError, write_plugin

    names = PluginNames.from_name(ctx.args.name, ctx.args.kind)
    registry = {"model": "models", "strategy": "strategies", "probe": "probes"}[names.kind]
    owner = getattr(ctx.host(), registry).owner_of(names.name)
    if owner is not None:
        raise ScaffoldError(
            f"{names.kind} name '{names.name}' is already registered by plugin '{owner.plugin}'; "
            "choose another NAME (nothing was written)"
        )
    target = write_plugin(names, Path(ctx.args.directory))
    print(f"created {names.dist} ({names.kind} '{names.name}') in {target}")
    print("next:")
    print(f"  pip install -e {target}")
    print(f"  keisei plugins            # lists '{names.name}'")
    print(f"  pytest {target / 'tests'}")
    return 0
