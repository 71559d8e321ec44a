"""Shared body of ``keisei models|strategies|probes``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from keisei_core.cli.output import print_json, print_table
from keisei_core.registry import Registration, Registry


def configure_listing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style name pattern, e.g. 'restower*'")
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def run_listing(
    registry: Registry[Any],
    args: argparse.Namespace,
    columns: list[tuple[str, Callable[[Registration[Any]], Any]]],
) -> int:
    found = registry.match(args.pattern)
    base: list[tuple[str, Callable[[Registration[Any]], Any]]] = [
        ("name", lambda r: r.name),
        ("plugin", lambda r: r.plugin),
        ("distribution", lambda r: r.distribution),
    ]
    every = [*base, *columns, ("description", lambda r: r.spec.description)]
    if args.json:
        print_json([{key: get(r) for key, get in every} for r in found])
        return 0
    shown = [(k, g) for k, g in every if k != "distribution"]
    rows = [[_cell(get(r)) for _, get in shown] for r in found]
    print_table(rows, [k for k, _ in shown])
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(sorted(str(v) for v in value))
    return "" if value is None else str(value)
