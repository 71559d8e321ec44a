"""``keisei tune MODEL --batch-sizes 1,64,256``: the fastest validated strategy per batch size.

Runs :func:`keisei_core.compile.auto.tune` (what ``compile_model(model, "auto")`` does)
and prints the choice per batch size and every candidate. ``--json`` prints
``{"choices": [{"batch_size", "strategy", "speedup"}, ...], "candidates": [...], ...}``;
``--out DIR`` also writes it to ``DIR/tune.json``. A decision cached by an earlier run
with the same model, weights, torch, device, CPU and candidate set is reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keisei_core.cli.commands.validate import _batch_sizes
from keisei_core.cli.context import CliContext
from keisei_core.cli.output import format_table, print_json

if TYPE_CHECKING:
    from keisei_core.compile.auto import TuneReport

NAME = "tune"
HELP = "try every registered strategy and composition, validate, time, and pick the fastest per batch size"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name")
    parser.add_argument(
        "--batch-sizes", type=_batch_sizes, default=(1, 64, 256), metavar="N,N,...",
        help="batch sizes the model will run at, one choice each (default 1,64,256)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="model option, e.g. --set depth=3 (repeatable; values parsed as TOML)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default cpu)")
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
        help="dtype of the model and its inputs (default float32)",
    )
    parser.add_argument("--max-compositions", type=int, default=None, metavar="N",
                        help="transform+compiler pairs to try after the single strategies (default 4)")
    parser.add_argument("--speed-seconds", type=float, default=None, metavar="S",
                        help="timing budget per candidate and batch size (default 2)")
    parser.add_argument("--no-cache", action="store_true", help="tune afresh and do not store the decision")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model weights and validation inputs")
    parser.add_argument("--json", action="store_true", help="print the report as a JSON object")
    parser.add_argument("--out", metavar="DIR", help="also write the report to DIR/tune.json")


def run(ctx: CliContext) -> int:
    import torch

    from keisei_core.cli.commands.info import model_options_from_overrides
    from keisei_core.compile.auto import MAX_COMPOSITIONS, TUNE_SPEED_SECONDS, tune
    from keisei_core.errors import ConfigError
    from keisei_core.models import build_from_spec, resolve_options

    args = ctx.args
    if args.max_compositions is not None and args.max_compositions < 0:
        raise ConfigError(f"--max-compositions must be >= 0, got {args.max_compositions}")
    if args.speed_seconds is not None and not args.speed_seconds > 0:
        raise ConfigError(f"--speed-seconds must be > 0, got {args.speed_seconds}")
    host = ctx.host()
    spec = host.models.get(args.model)
    options = resolve_options(spec, model_options_from_overrides(args.overrides), where=f"model '{spec.name}' options (--set)")
    torch.manual_seed(args.seed)
    model = build_from_spec(spec, options)

    def progress(text: str) -> None:
        if not args.json:
            print(f"keisei tune: {text}", file=sys.stderr, flush=True)

    _tuned, report = tune(
        model, batch_sizes=args.batch_sizes, host=host, device=args.device, dtype=args.dtype, seed=args.seed,
        max_compositions=MAX_COMPOSITIONS if args.max_compositions is None else args.max_compositions,
        speed_seconds=TUNE_SPEED_SECONDS if args.speed_seconds is None else args.speed_seconds,
        use_cache=not args.no_cache, progress=progress,
    )
    data = report.to_dict()
    if args.out:
        from keisei_core.atomic_files import write_json_atomic

        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "tune.json", data)
    if args.json:
        print_json(data)
    else:
        print(render(report))
    return 0


def _speed(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else "-"


def render(report: TuneReport) -> str:
    """The choices, then one row per candidate with its speed (and IQR of the pair ratios) per size."""
    where = "reused the cached decision" if report.reused else "tuned"
    lines = [
        f"{report.model}: {where} in {report.tune_seconds:.1f} s "
        f"({report.device}, {report.dtype}, {report.threads} thread(s), {report.cpu})",
    ]
    lines.extend(
        f"  batch {c.batch_size}: {c.strategy} ({c.speedup:.2f}x eager)" for c in report.choices
    )
    headers = ["candidate", "status", *[f"b{b}" for b in report.batch_sizes], "compile s", "reason"]
    rows = []
    for candidate in report.candidates:
        cells = []
        for size in report.batch_sizes:
            speed = candidate.speed_at(size)
            if speed is None:
                cells.append("-")
            elif speed.ratio_q1 is not None and speed.ratio_q3 is not None:
                cells.append(f"{speed.speedup:.2f}x ({speed.ratio_q1:.2f}-{speed.ratio_q3:.2f})")
            else:
                cells.append(_speed(speed.speedup))
        compile_s = "-" if candidate.compile_seconds is None else f"{candidate.compile_seconds:.1f}"
        reason = (candidate.reason or "")[:90]
        rows.append([candidate.strategy, candidate.status, *cells, compile_s, reason])
    lines.append("")
    lines.append(format_table(rows, headers))
    return "\n".join(lines)
