"""``keisei bench [CONFIG]``: run a benchmark matrix; write results, table, plots, W&B run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keisei_core.cli.context import CliContext

NAME = "bench"
HELP = "run a benchmark matrix (default: configs/quickstart.toml here, else the packaged quickstart)"
DEFAULT_CONFIG = "configs/quickstart.toml"
"""Used when it exists in the current directory (a checkout); else the packaged copy."""
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as shells report it
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help=f"experiment TOML file (default: {DEFAULT_CONFIG})")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set batch_sizes=[1,64] (repeatable; TOML values)",
    )
    parser.add_argument("--out", metavar="DIR", help="write results here (default: <output_dir>/<name>-<time>)")
    parser.add_argument(
        "--wandb", choices=("offline", "online", "disabled"),
        help="W&B tracking mode (default: the config's wandb.mode, itself offline by default)",
    )
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress line on stderr: cells done/total, the current cell, elapsed, ETA "
        "(default: on when stderr is a terminal)",
    )

    parser.add_argument(
        "--shard", metavar="I/N",
        help="run only the I-th of N deterministic shares of the matrix (merge them with keisei merge)",
    )


def packaged_config() -> Path:
    """The quickstart shipped inside keisei-core (what ``keisei bench`` runs anywhere)."""
    return Path(__file__).resolve().parents[2] / "bench" / "configs" / "quickstart.toml"


def _config_path(given: str | None) -> str:
    from keisei_core.errors import ConfigError

    if given:
        return given
    if Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    packaged = packaged_config()
    if packaged.is_file():
        return str(packaged)
    raise ConfigError(f"no CONFIG given, no {DEFAULT_CONFIG} here and no packaged quickstart; pass a config file")


def run(ctx: CliContext) -> int:
    import attrs

    from keisei_core import bench
    from keisei_core.config import load_experiment
    from keisei_core.optional import available, missing_message

    shard = None
    if ctx.args.shard:
        from keisei_core.bench.shards import Shard

        shard = Shard.parse(ctx.args.shard)
    path = _config_path(ctx.args.config)
    config = load_experiment(path, ctx.args.overrides)
    if ctx.args.wandb:
        config = attrs.evolve(config, wandb=attrs.evolve(config.wandb, mode=ctx.args.wandb))
    if shard is not None:
        from keisei_core.bench.shards import config_fingerprint, wandb_group

        # Every shard of one matrix logs into one W&B group (the config's, if it names one).
        group = wandb_group(config, config_fingerprint(config))
        config = attrs.evolve(config, wandb=attrs.evolve(config.wandb, group=group))
    host = ctx.host(config.plugins)
    run_name = bench.pipeline.default_run_name(config, shard)
    out_dir = Path(ctx.args.out) if ctx.args.out else Path(config.output_dir) / run_name
    table, plots = bench.TableReporter(out_dir), bench.PlotsReporter(out_dir)
    reporters: list[bench.Reporter] = [table, plots]
    tracker = None
    notes: list[str] = []
    if config.wandb.mode != "disabled" and not ctx.args.wandb and not available("wandb"):
        # The default (offline) tracking is a convenience: without the extra, bench runs
        # untracked; an explicit --wandb still fails with the same one-line message.
        notes.append(f"wandb: skipped, {missing_message('wandb', 'W&B tracking')}")
    elif config.wandb.mode != "disabled":
        from keisei_core.tracking import WandbTracker

        tracker = bench.WandbReporter(WandbTracker(config.wandb, out_dir, run_name=run_name), table, plots)
        reporters.append(tracker)
    progress = ctx.args.progress if ctx.args.progress is not None else sys.stderr.isatty()
    results = bench.run(
        config, host=host, reporters=reporters, out_dir=out_dir, config_path=path,
        plugins=ctx.args.plugins or [], progress=progress, run_name=run_name, shard=shard,
    )
    print(table.header)
    print(table.table)
    _summary(results, out_dir, plots.plots, tracker, [*notes, *plots.notes])
    if results.run.get("status") == "interrupted":
        return EXIT_TERMINATED if results.run.get("signal") == "SIGTERM" else EXIT_INTERRUPTED
    return 0


def _summary(
    results: object, out_dir: Path, plots: list[Path], tracker: object | None, notes: list[str]
) -> None:
    from keisei_core.bench.results import Results

    assert isinstance(results, Results)
    counts = {status: sum(1 for c in results.cells if c.status == status) for status in ("ok", "failed", "skipped")}
    lines = [
        f"cells: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped",
        f"results: {out_dir / 'results.json'}",
    ]
    lines.extend(f"plot: {p}" for p in plots)
    if counts["failed"]:
        lines.append(f"tracebacks of failed cells: {out_dir / 'failures.log'}")
    run_dir = getattr(tracker, "run_dir", None)
    if run_dir:
        lines.append(f"wandb: {run_dir}")
    lines.extend(notes)
    print("\n".join(lines), file=sys.stderr)
