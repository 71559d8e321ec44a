"""``torchrun ... -m keisei_plugin_distributed.torchrun CONFIG``: train-step-ddp on many GPUs or hosts.

torchrun starts one process per GPU on every node and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; this module joins that process group
(``env://``) and measures ``train-step-ddp`` for every (model, strategy, batch size) of a
keisei bench config, one cell after another, with the same per-rank code as the local
probe (:func:`keisei_plugin_distributed.worker.run_cell_in_group`). Other probes named
in the config are ignored: this runner measures the distributed step only.

Rank 0 writes a keisei results file (``--out DIR``/results.json, rewritten atomically
after each cell), so ``keisei compare`` and ``keisei merge`` read it like any other.
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
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keisei_core.plugin import KeiseiError
from keisei_plugin_distributed.options import (
    PROBE_NAME,
    DistributedProbeError,
    parse_options,
    resolve_plan,
)

EXIT_USAGE = 2
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
    import attrs
    import torch
    import torch.distributed as dist

    from keisei_core.plugin import (
        BenchEngine,
        PluginHost,
        Results,
        config_fingerprint,
        environment_manifest,
        experiment_to_dict,
        load_average,
        load_experiment,
    )

    rank, local_rank, world_size = torchrun_environment()
    config = load_experiment(args.config, args.overrides)
    options = parse_options(config.probe_options.get(PROBE_NAME))
    threads = config.bench.threads or torch.get_num_threads()
    gpus = torch.cuda.device_count() if config.device == "cuda" else 0
    plan = resolve_plan(options, device=config.device, threads=threads, gpus=gpus)
    # torchrun decides how many ranks there are; the option only applies to local launches.
    plan = attrs.evolve(plan, world_size=world_size)
    plugins = [*args.plugins, *config.plugins]
    host = PluginHost(plugins, warn=lambda _message: None).load()
    engine = BenchEngine(config, host, Path("unused"), config_path=args.config, plugins=plugins, progress=False)
    engine.validate()  # the same one-line errors as keisei bench, on every rank, before any collective

    init: dict[str, Any] = {}
    if plan.backend == "nccl":
        torch.cuda.set_device(local_rank)
        init["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group(plan.backend, timeout=timedelta(seconds=plan.timeout_seconds), **init)
    try:
        hosts: list[Any] = [None] * world_size
        dist.all_gather_object(hosts, os.uname().nodename)
        results = None
        if rank == 0:
            name = f"{config.name}-ddp-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
            out = Path(args.out) if args.out else Path(config.output_dir) / name
            manifest = environment_manifest(host, threads=plan.threads_per_rank, device=config.device)
            manifest.update(world_size=world_size, backend=plan.backend, launcher="torchrun", hosts=hosts)
            results = Results(
                run={
                    "name": name, "status": "running", "started": _now(), "finished": None,
                    "config_path": args.config, "config": experiment_to_dict(config),
                    "config_fingerprint": config_fingerprint(config), "shard": None,
                    "probe": PROBE_NAME,
                },
                manifest=manifest,
                path=out / "results.json",
            )
            results.save()
        try:
            for cell in _cells(config, host, plan, plugins, local_rank):
                if results is not None:
                    results.append(cell)
                    print(f"keisei: {cell.model_label}/{cell.strategy}/b{cell.batch_size}: {_describe(cell)}",
                          file=sys.stderr, flush=True)
        except BaseException:
            if results is not None:
                results.run.update(status="failed", finished=_now())
                results.save()
            raise
        if results is not None:
            results.manifest["load_average_at_end"] = load_average()
            results.run.update(status="complete", finished=_now())
            results.save()
            print(f"results: {results.path}", file=sys.stderr)
    finally:
        dist.destroy_process_group()
    return 0


def _cells(config: Any, host: Any, plan: Any, plugins: list[str], local_rank: int) -> Any:
    """Each (model, strategy, batch size) cell, measured by every rank together."""
    import time

    from keisei_core.plugin import (
        CellRecord,
        StrategyUnsupported,
        check_support,
        options_as_dict,
        report_from_data,
        resolve_options,
    )
    from keisei_plugin_distributed.probe import cell_task, summary_to_result
    from keisei_plugin_distributed.worker import CellBuildFailed, run_cell_in_group

    for entry in config.models:
        spec = host.models.get(entry.name)
        options = options_as_dict(resolve_options(spec, entry.options))
        for strategy in config.strategies:
            for batch_size in config.batch_sizes:
                cell = CellRecord(
                    model=entry.name, model_label=entry.display_name, model_options=options, strategy=strategy,
                    probe=PROBE_NAME, batch_size=batch_size, device=config.device, dtype=config.dtype, status="ok",
                )
                start = time.perf_counter()
                try:
                    check_support(host, strategy, device=config.device, dtype=config.dtype, training=True)
                    task = cell_task(
                        model=entry.name, options=dict(entry.options), strategy=strategy, batch_size=batch_size,
                        device=config.device, dtype=config.dtype, seed=config.seed,
                        settings=attrs_dict(config.bench), plugins=plugins, plan=plan,
                    )
                    summary = run_cell_in_group(task, local_rank=local_rank)
                    cell.result = summary_to_result(summary, batch_size=batch_size, plan=plan, launcher="torchrun")
                    report = summary.get("compile_report")  # data from the ranks' result file
                    cell.compile_report = report_from_data(report) if report is not None else None
                except StrategyUnsupported as exc:  # the same on every rank: nothing ran
                    cell.status, cell.reason = "skipped", str(exc)
                except CellBuildFailed as exc:  # every rank raised it together
                    cell.status, cell.reason = "failed", f"{type(exc).__name__}: {exc}"
                cell.duration_seconds = round(time.perf_counter() - start, 3)
                yield cell


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


def _now() -> str:
    from keisei_core.plugin import now_iso

    return now_iso()


if __name__ == "__main__":  # pragma: no cover - the torchrun entry point
    sys.exit(main())
