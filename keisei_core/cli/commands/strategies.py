"""``keisei strategies``: registered compilation strategies and transforms."""

from __future__ import annotations

import argparse

from keisei_core.cli.commands._listing import configure_listing, run_listing
from keisei_core.cli.context import CliContext

NAME = "strategies"
HELP = "list registered compilation strategies (compose them with '+')"


def configure(parser: argparse.ArgumentParser) -> None:
    configure_listing(parser)


def run(ctx: CliContext) -> int:
    return run_listing(
        ctx.host().strategies,
        ctx.args,
        [
            ("kind", lambda r: r.spec.kind),
            ("devices", lambda r: sorted(r.spec.devices)),
            ("dtypes", lambda r: sorted(r.spec.dtypes)),
            ("training", lambda r: r.spec.training),
        ],
    )
