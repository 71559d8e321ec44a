"""``keisei compare OLD.json NEW.json [--fail-above PCT]``: regressions between two runs."""

from __future__ import annotations

import argparse
import sys

from keisei_core.cli.context import CliContext

NAME = "compare"
HELP = "compare two benchmark results files; exit 1 on a significant regression"
DEFAULT_THRESHOLD = 5.0
EXIT_REGRESSION = 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="baseline results.json (or the run folder holding it)")
    parser.add_argument("new", help="results.json to check against the baseline (or its folder)")
    parser.add_argument(
        "--fail-above", type=float, default=DEFAULT_THRESHOLD, metavar="PCT",
        help=f"a significant change worse than PCT percent is a regression (default {DEFAULT_THRESHOLD:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def _results_path(given: str) -> str:
    from pathlib import Path

    path = Path(given)
    return str(path / "results.json") if path.is_dir() else given


def run(ctx: CliContext) -> int:
    from keisei_core.bench.compare import (
        compare_results,
        environment_differences,
        format_comparison,
        is_regression,
    )
    from keisei_core.bench.results import load_results
    from keisei_core.errors import KeiseiError

    if ctx.args.fail_above < 0:
        raise KeiseiError(f"--fail-above must be >= 0, got {ctx.args.fail_above}")
    old = load_results(_results_path(ctx.args.old))
    new = load_results(_results_path(ctx.args.new))
    comparisons = compare_results(old, new, threshold=ctx.args.fail_above)
    regressions = [c for c in comparisons if is_regression(c)]
    if ctx.args.json:
        from keisei_core.cli.output import print_json

        print_json({
            "threshold_percent": ctx.args.fail_above,
            "status": {"old": old.run.get("status"), "new": new.run.get("status")},
            "regressions": len(regressions),
            "cells": [
                {"model": c.key[0], "strategy": c.key[1], "probe": c.key[2], "batch_size": c.key[3],
                 "old": c.old.value if c.old else None, "new": c.new.value if c.new else None,
                 "ratio": c.ratio, "ci95": list(c.ci) if c.ci else None,
                 "worse_percent": c.worse_percent, "p_value": c.p_value, "significant": c.significant,
                 "verdict": c.verdict}
                for c in comparisons
            ],
        })
    else:
        print(format_comparison(comparisons))
    for label, results in (("old", old), ("new", new)):
        status = results.run.get("status")
        if status not in (None, "complete"):
            print(
                f"keisei: warning: the {label} run is {status} ({len(results.cells)} cells); cells it "
                "did not reach are compared as missing",
                file=sys.stderr,
            )
    for note in environment_differences(old, new):
        print(f"keisei: warning: environments differ ({note}); changes may not be the code's", file=sys.stderr)
    if regressions:
        print(
            f"{len(regressions)} regression(s) beyond {ctx.args.fail_above:g}% "
            "(significant at 95%, or a cell that now fails)",
            file=sys.stderr,
        )
        return EXIT_REGRESSION
    print(f"no significant regression beyond {ctx.args.fail_above:g}%", file=sys.stderr)
    return 0
