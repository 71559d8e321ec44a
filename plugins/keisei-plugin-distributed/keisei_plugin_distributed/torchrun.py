"""``torchrun ... -m keisei_plugin_distributed.torchrun CONFIG``: train-step-ddp on many GPUs or hosts.

torchrun starts one process per GPU on every node and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Every rank calls
``keisei_core.bench.run`` (the pipeline of ``keisei bench``: validation, planning, results,
reporters) with a :class:`RankExecutor`, which keeps only what is rank-specific: it joins
that process group (``env://``), measures ``train-step-ddp`` for every (model, strategy,
batch size) of the config with the same per-rank code as the local probe
(:func:`keisei_plugin_distributed.worker.run_cell_in_group`), lets rank 0 alone write the
results and meets the other ranks at a barrier at the end. Other probes named in the
config are ignored: this runner measures the distributed step only.

Rank 0 writes a keisei results file (``--out DIR``/results.json, rewritten atomically
after each cell, and ``table.txt`` at the end), so ``keisei compare`` and ``keisei
merge`` read it like any other.
A cell no rank can build, or a strategy that cannot train, is recorded (``failed`` /
``skipped``) and the run goes on -- every rank agrees on that before going further. A
rank that dies or raises *during* the measured steps ends the job: torchrun stops the
other workers (the process group's ``timeout_seconds`` bounds a hang), and the results
file keeps every finished cell.

Example (2 nodes x 8 GPUs)::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint "$HEAD_NODE:29500" --rdzv-id keisei-ddp \\
        -m keisei_plugin_distributed.torchrun configs/ddp.toml --out results/ddp

The same runner is the ``keisei ddp-bench`` command (``torchrun --no-python ... keisei
ddp-bench CONFIG``), registered through the ``keisei_register_commands`` hook.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from keisei_core.plugin import Executor, KeiseiError, Reporter
from keisei_plugin_distributed.options import (
    PROBE_NAME,
    DistributedProbeError,
    parse_options,
    resolve_plan,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keisei_plugin_distributed.torchrun",
        description=COMMAND_HELP,
    )
    configure(parser)
    parser.add_argument("-p", "--plugin", dest="plugins", action="append", default=[], metavar="PLUGIN",
                        help="load a local plugin (.py file or module) on every rank")
    return parser


COMMAND_HELP = (
    "Measure train-step-ddp for every (model, strategy, batch size) of a bench config; "
    "start it with torchrun."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The runner's arguments (``keisei ddp-bench`` adds ``-p`` itself, like every command)."""
    parser.add_argument("config", help="keisei bench config (TOML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as keisei bench --set")
    parser.add_argument("--out", metavar="DIR", help="results folder (default: <output_dir>/<name>-ddp-<time>)")


def run_command(ctx: Any) -> int:
    """``torchrun --no-python ... keisei ddp-bench CONFIG``: the same runner as a keisei command."""
    return run(ctx.args)


def torchrun_environment(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's variables; a clear error without them."""
    env = dict(os.environ if env is None else env)
    missing = [name for name in TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise DistributedProbeError(
            f"{', '.join(missing)} not set: start this module with torchrun "
            "(torchrun --nproc-per-node N -m keisei_plugin_distributed.torchrun CONFIG), "
            "or use the train-step-ddp probe in keisei bench for a local run"
        )
    try:
        return int(env["RANK"]), int(env["LOCAL_RANK"]), int(env["WORLD_SIZE"])
    except ValueError:
        raise DistributedProbeError("RANK, LOCAL_RANK and WORLD_SIZE must be integers") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeiseiError as exc:
        print(f"keisei: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """Join torchrun's process group and run the config's matrix through ``keisei_core.bench.run``
    with a :class:`RankExecutor`: the pipeline plans, validates and records the cells; what
    is rank-specific lives in the executor."""
    import attrs

    from keisei_core.plugin import TableReporter, load_experiment, run_bench

    rank, local_rank, world_size = torchrun_environment()
    config = load_experiment(args.config, args.overrides)
    # This runner measures the distributed step only: other probes of the config are not its.
    config = attrs.evolve(config, probes=[PROBE_NAME])
    name = f"{config.name}-ddp-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(args.out) if args.out else Path(config.output_dir) / name
    executor = RankExecutor(rank=rank, local_rank=local_rank, world_size=world_size)
    reporters: list[Any] = [CellLines(), TableReporter(out)] if rank == 0 else []
    results = run_bench(
        config, config_path=args.config, plugins=list(args.plugins), executor=executor,
        reporters=reporters, out_dir=out, run_name=name,
    )
    if rank == 0:
        print(f"results: {out / 'results.json'}", file=sys.stderr)
    if results.run.get("status") == "interrupted":  # as keisei bench: 128 + the signal
        return EXIT_TERMINATED if results.run.get("signal") == "SIGTERM" else EXIT_INTERRUPTED
    return 0


class RankExecutor(Executor):
    """Runs every cell across the ranks of torchrun's process group.

    ``start`` joins the group (``env://``) and gathers the ranks' hosts for the manifest;
    each cell is measured by every rank together (:func:`keisei_plugin_distributed.worker.run_cell_in_group`);
    only rank 0 writes the results file; ``close`` waits for every rank at a barrier
    after a complete run, then leaves the group."""

    name = "torchrun"

    def __init__(self, *, rank: int, local_rank: int, world_size: int) -> None:
        self.rank, self.local_rank, self.world_size = rank, local_rank, world_size
        self.writes_results = rank == 0
        self.plan: Any = None

    def start(self, config: Any, host: Any) -> dict[str, Any]:
        from datetime import timedelta

        import attrs
        import torch
        import torch.distributed as dist

        options = parse_options(config.probe_options.get(PROBE_NAME))
        threads = config.bench.threads or torch.get_num_threads()
        gpus = torch.cuda.device_count() if config.device == "cuda" else 0
        # torchrun decides how many ranks there are; the option only applies to local launches.
        plan = resolve_plan(options, device=config.device, threads=threads, gpus=gpus)
        self.plan = attrs.evolve(plan, world_size=self.world_size)
        init: dict[str, Any] = {}
        if self.plan.backend == "nccl":
            torch.cuda.set_device(self.local_rank)
            init["device_id"] = torch.device("cuda", self.local_rank)
        dist.init_process_group(self.plan.backend, timeout=timedelta(seconds=self.plan.timeout_seconds), **init)
        hosts: list[Any] = [None] * self.world_size
        dist.all_gather_object(hosts, os.uname().nodename)
        return {
            "threads": self.plan.threads_per_rank, "world_size": self.world_size,
            "backend": self.plan.backend, "launcher": "torchrun", "hosts": hosts,
        }

    def run_group(self, job: Any) -> Iterator[Any]:
        import time

        from keisei_core.plugin import report_from_data
        from keisei_plugin_distributed.probe import cell_task, summary_to_result
        from keisei_plugin_distributed.worker import CellBuildFailed, run_cell_in_group

        unsupported = job.unsupported_reason()  # the same on every rank: nothing runs
        for probe, batch_size in job.cells:
            job.activity(f"{job.label}/b{batch_size}/{probe.name}")
            cell = job.new_cell(probe, batch_size)
            start = time.perf_counter()
            if unsupported is not None:
                cell.status, cell.reason = "skipped", unsupported
            else:
                config = job.config
                task = cell_task(
                    model=job.entry.name, options=dict(job.entry.options), strategy=job.strategy,
                    batch_size=batch_size, device=config.device, dtype=config.dtype, seed=config.seed,
                    settings=attrs_dict(config.bench), plugins=job.plugins, plan=self.plan,
                )
                try:
                    summary = run_cell_in_group(task, local_rank=self.local_rank)
                    cell.result = summary_to_result(summary, batch_size=batch_size, plan=self.plan, launcher="torchrun")
                    report = summary.get("compile_report")  # data from the ranks' result file
                    cell.compile_report = report_from_data(report) if report is not None else None
                except CellBuildFailed as exc:  # every rank raised it together
                    cell.status, cell.reason = "failed", f"{type(exc).__name__}: {exc}"
            cell.duration_seconds = round(time.perf_counter() - start, 3)
            yield cell

    def close(self, completed: bool) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        try:
            if completed:  # a rank that broke off would leave the others waiting here
                dist.barrier()
        finally:
            dist.destroy_process_group()


class CellLines(Reporter):
    """Rank 0's line per finished cell on stderr (the job's log under a scheduler)."""

    def on_cell(self, cell: Any, results: Any) -> None:
        print(f"keisei: {cell.model_label}/{cell.strategy}/b{cell.batch_size}: {_describe(cell)}",
              file=sys.stderr, flush=True)


def attrs_dict(value: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(value) if attrs.has(type(value)) else dict(value)


def _describe(cell: Any) -> str:
    if cell.status != "ok" or cell.result is None:
        return f"{cell.status} ({cell.reason})"
    extra = cell.result.extra
    efficiency = extra.get("scaling_efficiency")
    tail = f", scaling efficiency {efficiency:.2f}" if efficiency is not None else ""
    return f"{cell.value:.1f} samples/s on {extra['world_size']} ranks ({extra['backend']}){tail}"


if __name__ == "__main__":  # pragma: no cover - the torchrun entry point
    sys.exit(main())
