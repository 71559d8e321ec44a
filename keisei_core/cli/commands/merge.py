"""``keisei merge A.json B.json ... -o all.json``: combine the shards of one matrix."""

from __future__ import annotations

import argparse
import sys

from keisei_core.cli.context import CliContext

NAME = "merge"
HELP = "merge the results of `keisei bench --shard I/N` runs into one results file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", metavar="RESULTS", help="shard results.json files (or their run folders)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="merged results file to write")
    parser.add_argument(
        "--allow-missing", action="store_true",
        help="merge even when shards or cells are missing; the merged run is marked 'partial'",
    )
    parser.add_argument("--no-table", action="store_true", help="do not print the merged table")


def run(ctx: CliContext) -> int:
    from keisei_core.bench.merge import MergeError, merge_results, results_path
    from keisei_core.bench.table import format_header, format_results_table

    output = results_path(ctx.args.output)
    if output.resolve() in {results_path(p).resolve() for p in ctx.args.shards}:
        raise MergeError(f"-o {ctx.args.output}: would overwrite one of the shards being merged")
    merged = merge_results(ctx.args.shards, allow_missing=ctx.args.allow_missing)
    merged.save(output)  # atomic: temporary file, fsync, rename
    for warning in merged.run.get("merge_warnings") or []:
        print(f"keisei: warning: {warning}", file=sys.stderr)
    if not ctx.args.no_table:
        print(format_header(merged))
        print(format_results_table(merged))
    counts = {s: sum(1 for c in merged.cells if c.status == s) for s in ("ok", "failed", "skipped")}
    shards = len(merged.run.get("merged_from") or [])
    print(
        f"merged {shards} shard(s), {len(merged.cells)} cells ({counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['skipped']} skipped), status {merged.run['status']}: {output}",
        file=sys.stderr,
    )
    return 0
