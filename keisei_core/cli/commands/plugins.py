"""``keisei plugins``: installed plugins from package metadata, without importing them."""

from __future__ import annotations

import argparse

from keisei_core.cli.context import CliContext
from keisei_core.cli.output import print_json, print_table

NAME = "plugins"
HELP = "list plugins (built-in, installed, local) with their status; imports nothing unless --verbose"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument(
        "--verbose", action="store_true", help="load the plugins to show hooks, errors and registrations"
    )


def run(ctx: CliContext) -> int:
    if ctx.args.verbose or ctx.args.plugins:
        records = ctx.host().records
    else:
        from keisei_core.plugins import PluginHost

        # Metadata only: no plugin code and no torch is imported.
        records = PluginHost(strict=False).records
    if ctx.args.json:
        print_json([r.as_json() for r in records])
        return 0
    rows = []
    for r in records:
        rows.append(
            [
                r.name,
                r.source,
                r.distribution or "-",
                r.version or "-",
                r.status,
                ",".join(h.removeprefix("keisei_register_") for h in r.hooks) or "-",
                r.error or "",
            ]
        )
    print_table(rows, ["name", "source", "distribution", "version", "status", "hooks", "error"])
    return 0
