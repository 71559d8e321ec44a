"""``keisei probes``: registered benchmark probes."""

from __future__ import annotations

import argparse

from keisei_core.cli.commands._listing import configure_listing, run_listing
from keisei_core.cli.context import CliContext

NAME = "probes"
HELP = "list registered benchmark probes"


def configure(parser: argparse.ArgumentParser) -> None:
    configure_listing(parser)


def run(ctx: CliContext) -> int:
    return run_listing(
        ctx.host().probes,
        ctx.args,
        [("unit", lambda r: r.spec.unit), ("devices", lambda r: sorted(r.spec.devices))],
    )
