"""``keisei models``: registered model architectures."""

from __future__ import annotations

import argparse

from keisei_core.cli.commands._listing import configure_listing, run_listing
from keisei_core.cli.context import CliContext

NAME = "models"
HELP = "list registered models"


def configure(parser: argparse.ArgumentParser) -> None:
    configure_listing(parser)


def run(ctx: CliContext) -> int:
    return run_listing(ctx.host().models, ctx.args, [("family", lambda r: r.spec.family)])
