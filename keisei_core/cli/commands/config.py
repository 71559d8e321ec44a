"""``keisei config show [FILE]``: the resolved experiment config as TOML."""

from __future__ import annotations

import argparse

from keisei_core.cli.context import CliContext

NAME = "config"
HELP = "work with experiment configs"
DEFAULT_CONFIG = "configs/quickstart.toml"
"""Used when it exists in the current directory (a checkout); else the packaged copy."""


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the resolved config (file + --set) as TOML")
    show.add_argument("file", nargs="?", help=f"config file (default: {DEFAULT_CONFIG} when present)")
    show.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a key, e.g. --set batch_sizes=[1,64] (repeatable; TOML values)",
    )
    show.add_argument("--check", action="store_true", help="also load plugins and check every name and model option")


def default_config_path() -> str | None:
    from pathlib import Path

    from keisei_core.cli.commands.bench import packaged_config

    if Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    packaged = packaged_config()
    return str(packaged) if packaged.is_file() else None


def run(ctx: CliContext) -> int:
    from keisei_core.config import dump_toml, experiment_to_dict, load_experiment

    path = ctx.args.file or default_config_path()
    config = load_experiment(path, ctx.args.overrides)
    if ctx.args.check:
        from keisei_core.bench.checks import check_names

        check_names(config, ctx.host(config.plugins), where=path or "config")
    print(dump_toml(experiment_to_dict(config)), end="")
    return 0
