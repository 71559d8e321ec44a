"""``keisei validate MODEL --strategy S``: compile, check against eager, print the report.

Exit status: 0 when the strategy compiled, fell back to eager, or was skipped (the
report says which and why); 1 when ``--no-fallback`` was given and it failed; 2 for a
usage error (unknown model or strategy, bad option).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from keisei_core.cli.context import CliContext
from keisei_core.cli.output import format_table, print_json
from keisei_core.dtypes import DTYPE_NAMES
from keisei_core.errors import ConfigError

if TYPE_CHECKING:
    from keisei_core.compile.report import CompileReport

NAME = "validate"
HELP = "compile a model with a strategy, check it against eager, and print the compile report"

EXIT_FAILED = 1


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,64, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
    return sizes


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name")
    parser.add_argument(
        "--strategy", "-s", required=True,
        help="strategy name or composition, e.g. inductor or channels-last+bf16+inductor",
    )
    parser.add_argument(
        "--batch-sizes", type=_batch_sizes, default=None, metavar="N,N,...",
        help="batch sizes to validate at (default 1,8,64: one per compiler shape bucket)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="model option, e.g. --set depth=3 (repeatable; values parsed as TOML)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default cpu)")
    parser.add_argument(
        "--dtype", choices=DTYPE_NAMES, default="float32",
        help="dtype of the model and its inputs (default float32)",
    )
    parser.add_argument(
        "--eval-only", action="store_true",
        help="validate eval mode only, even when the strategy supports training",
    )
    parser.add_argument("--guard", choices=("faster",), default=None,
                        help="faster: also time both and fall back when the compiled model is not faster")
    parser.add_argument("--no-fallback", action="store_true",
                        help="exit 1 instead of falling back to eager when the strategy fails")
    parser.add_argument("--atol", type=float, default=None, help="absolute tolerance (default: by precision)")
    parser.add_argument("--rtol", type=float, default=None, help="relative tolerance (default: by precision)")
    parser.add_argument("--grad-rtol", type=float, default=None,
                        help="relative L2 tolerance of gradients (default: by precision)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation inputs")
    parser.add_argument("--json", action="store_true", help="print the report as a JSON object")


def _tolerance(args: argparse.Namespace, precision: str) -> Any:
    from keisei_core.compile.report import Tolerance
    from keisei_core.compile.tolerances import resolve_tolerance

    if args.atol is None and args.rtol is None and args.grad_rtol is None:
        return None
    for flag in ("atol", "rtol", "grad_rtol"):
        value = getattr(args, flag)
        if value is not None and not value >= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 0, got {value}")
    base = resolve_tolerance(precision)
    return Tolerance(
        atol=base.atol if args.atol is None else args.atol,
        rtol=base.rtol if args.rtol is None else args.rtol,
        grad_rtol=base.grad_rtol if args.grad_rtol is None else args.grad_rtol,
    )


def run(ctx: CliContext) -> int:
    import torch

    from keisei_core.cli.commands.info import model_options_from_overrides
    from keisei_core.compile.engine import DEFAULT_BATCH_SIZES, compile_model, resolve_strategy
    from keisei_core.compile.report import CompileFailedError
    from keisei_core.models import build_from_spec, resolve_options

    args = ctx.args
    host = ctx.host()
    composition = resolve_strategy(args.strategy, host)  # name errors before any build
    spec = host.models.get(args.model)
    options = resolve_options(spec, model_options_from_overrides(args.overrides), where=f"model '{spec.name}' options (--set)")
    torch.manual_seed(args.seed)
    model = build_from_spec(spec, options)
    try:
        _, report = compile_model(
            model,
            composition,
            fallback=not args.no_fallback,
            guard=args.guard,
            device=args.device,
            dtype=args.dtype,
            batch_sizes=args.batch_sizes or DEFAULT_BATCH_SIZES,
            tolerances=_tolerance(args, composition.precision or args.dtype),
            training=False if args.eval_only else None,
            host=host,
            seed=args.seed,
        )
        status = 0
    except CompileFailedError as exc:
        report, status = exc.report, EXIT_FAILED
    if args.json:
        print_json(report.to_dict())
    else:
        print(render_report(report))
    return status


def render_report(report: CompileReport) -> str:
    """The report for a terminal: a summary, the worst difference per output, the facts."""
    lines = [report.summary()]
    facts = [
        ("model", f"{report.model} {_options(report.model_options)}".strip()),
        ("device / dtype", f"{report.device} / {report.dtype} (compared as {report.precision})"),
        ("batch sizes", ", ".join(str(b) for b in report.batch_sizes)),
        ("modes", ", ".join(report.modes) or "-"),
        ("compile seconds", "-" if report.compile_seconds is None else f"{report.compile_seconds:.2f}"),
        ("warm start", {True: "yes (artifacts reused)", False: "no (compiled afresh)", None: "-"}[report.warm_start]),
        ("graphs / recompiles", f"{report.graphs} / {report.recompiles}"),
    ]
    if report.failure is not None:
        facts.append(("failure", report.failure.summary()))
    if report.cache:
        facts.append(("caches", ", ".join(f"{k}={v}" for k, v in sorted(report.cache.items()))))
    if report.speed is not None:
        s = report.speed
        facts.append(("speed", f"eager {s.eager_ms:.3g} ms, compiled {s.compiled_ms:.3g} ms at batch "
                               f"{s.batch_size} ({s.speedup:.2f}x, median of {s.samples})"))
    facts.extend((key, str(value)) for key, value in sorted(report.notes.items()))
    width = max(len(k) for k, _ in facts)
    lines.extend(f"  {k.ljust(width)}  {v}" for k, v in facts)
    if report.checks:
        lines.append("")
        lines.append(format_table(_worst_rows(report), ["mode", "output", "checks", "max abs diff", "max rel diff", "tolerance", "passed"]))
    if report.policy_checks:
        lines.append("")
        rows = [
            [str(c.batch_size), c.metric, f"{c.found:.3g}", ("at least " if c.at_least else "at most ") + f"{c.threshold:g}",
             "yes" if c.passed else "NO"]
            for c in report.policy_checks
        ]
        lines.append(format_table(rows, ["batch", "policy metric", "found", "threshold", "passed"]))
    return "\n".join(lines)


def _options(options: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else ""


def _worst_rows(report: CompileReport) -> list[list[str]]:
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for check in report.checks:
        groups.setdefault((check.mode, check.method, check.output), []).append(check)
    rows = []
    for (mode, method, output), checks in groups.items():
        tol = checks[0]
        tolerance = f"rel L2 {tol.rtol:g}" if method == "backward" else f"{tol.atol:g} + {tol.rtol:g}*|x|"
        passed = sum(c.passed for c in checks)
        rows.append([
            mode, f"{method}.{output}", str(len(checks)),
            f"{max(c.max_abs_diff for c in checks):.3g}", f"{max(c.max_rel_diff for c in checks):.3g}",
            tolerance, "yes" if passed == len(checks) else f"NO ({len(checks) - passed} failed)",
        ])
    return rows
