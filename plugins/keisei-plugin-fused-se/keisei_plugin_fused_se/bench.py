"""``python -m keisei_plugin_fused_se.bench``: the SE unit alone, eager vs compiled vs fused.

Builds one SE unit (Keisei's init, ``hidden = max(1, int(C * se_ratio))``) and times its
three forms (see :mod:`.unit_timing`) interleaved, forward and/or training step, with
the core's adaptive timing. Prints one line per form and the fused op's paired speedups;
``--json`` also writes them. The defaults are the figures in the plugin README:
batch 64, 256 channels, 9x9, plain SE, float32, NCHW, forward and training step.

``--model NAME`` measures a whole registered model instead: the eager model against a
copy with every SE unit fused, acting calls (``get_action_and_value``, eval mode) and
PPO update steps (train mode, Adam), interleaved so each ratio pairs two calls made
under the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keisei_core.plugin import DTYPE_NAMES

DTYPES = DTYPE_NAMES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keisei_plugin_fused_se.bench", description=__doc__.splitlines()[0])
    configure(parser)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    """The bench's arguments, for ``python -m keisei_plugin_fused_se.bench`` and ``keisei fused-se-bench``."""
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--board", type=int, default=9)
    parser.add_argument("--se-ratio", type=float, default=0.25, help="hidden = max(1, int(C * ratio))")
    parser.add_argument("--film", action="store_true", help="SE-FiLM (scale and shift) instead of plain SE")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--mode", choices=("forward", "train", "both"), default="both")
    parser.add_argument("--budget", type=float, default=3.0, help="time budget per form and mode, seconds")
    parser.add_argument("--max-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    parser.add_argument(
        "--model", default=None,
        help="time a registered model (eager vs fused-se, acting and PPO steps) instead of one unit",
    )  # fmt: skip


def _check(args: argparse.Namespace) -> str | None:
    if min(args.batch, args.channels, args.board) < 1:
        return "batch, channels and board must be >= 1"
    if not 0 < args.se_ratio <= 4:
        return "se-ratio must be in (0, 4]"
    if args.threads is not None and args.threads < 1:
        return "threads must be >= 1"
    if args.budget <= 0 or args.max_samples < 3:
        return "budget must be > 0 and max-samples >= 3"
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from keisei_core.plugin import (
        SqueezeExcitation,
        SqueezeExcitationFiLM,
        measure_interleaved,
        se_hidden_width,
    )
    from keisei_plugin_fused_se import unit_timing
    from keisei_plugin_fused_se.ops import cpu_kernel_isa, require_kernels

    require_kernels(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    hidden = se_hidden_width(args.channels, args.se_ratio)
    unit_cls = SqueezeExcitationFiLM if args.film else SqueezeExcitation
    unit = unit_cls(args.channels, hidden).to(device=args.device, dtype=dtype)
    shape = (args.batch, args.channels, args.board, args.board)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    # A block's branch output (BN-normalised) and its input (post-ReLU of the previous block).
    y = torch.randn(shape, device=args.device, dtype=dtype).contiguous(memory_format=fmt)
    residual = torch.randn(shape, device=args.device, dtype=dtype).relu().contiguous(memory_format=fmt)
    forms = unit_timing.make_forms(unit)
    sync = torch.cuda.synchronize if args.device == "cuda" else None
    settings = {
        "warmup_seconds": 0.3,
        "min_samples": 10,
        "max_samples": args.max_samples,
        "time_budget_seconds": args.budget,
        "target_iqr_ratio": 0.02,
        "sync": sync,
        "seed": args.seed,
    }
    modes = ("forward", "train") if args.mode == "both" else (args.mode,)
    results: dict[str, Any] = {
        "command": "python -m keisei_plugin_fused_se.bench " + " ".join(sys.argv[1:]),
        "shape": list(shape),
        "hidden": hidden,
        "film": args.film,
        "dtype": args.dtype,
        "channels_last": args.channels_last,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpu_isa": cpu_kernel_isa() if args.device == "cpu" else None,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "max_abs_difference": unit_timing.max_difference(forms, y, residual),
    }
    for mode in modes:
        calls = (
            unit_timing.forward_calls(forms, y, residual)
            if mode == "forward"
            else unit_timing.train_calls(forms, y, residual, seed=args.seed)
        )
        first = unit_timing.first_calls(calls, sync)
        timings = measure_interleaved(calls, **settings)  # type: ignore[arg-type]
        results[mode] = {
            **unit_timing.summary(timings),
            "samples": timings["fused"].n,
            "first_call_seconds": first,
            "page_faults_per_call": unit_timing.page_faults_per_call(calls, sync=sync),
        }
    results["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return results


def run_model(args: argparse.Namespace) -> dict[str, Any]:
    import copy

    import torch

    from keisei_core.plugin import (
        BenchSettings,
        ProbeContext,
        act_call,
        build_model,
        measure_interleaved,
        model_shapes,
        paired_ratio,
        ppo_step,
    )
    from keisei_plugin_fused_se.errors import FusedSEError
    from keisei_plugin_fused_se.module import fuse_se_units
    from keisei_plugin_fused_se.ops import cpu_kernel_isa, require_kernels

    require_kernels(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    eager = build_model(args.model).to(device=args.device, dtype=getattr(torch, args.dtype))
    fused = copy.deepcopy(eager)
    names, _skipped = fuse_se_units(fused)
    if not names:
        raise FusedSEError(f"model '{args.model}' has no fusable SE unit: nothing to compare")
    shapes = model_shapes(eager)
    # A ProbeContext gives the same synthetic observations, masks and PPO batch as `keisei bench`.
    inputs = ProbeContext(
        model=eager, eager_model=eager, model_name=args.model, model_options={}, strategy="fused-se",
        batch_size=args.batch, device=args.device, dtype=args.dtype, seed=args.seed,
        settings=BenchSettings(), threads=torch.get_num_threads(), scratch_dir=Path("."),
        observation_shape=shapes.observation, num_actions=shapes.num_actions,
    )  # fmt: skip
    sync = torch.cuda.synchronize if args.device == "cuda" else None
    settings = {
        "warmup_seconds": 0.5, "min_samples": 8, "max_samples": args.max_samples,
        "time_budget_seconds": args.budget, "target_iqr_ratio": 0.02, "sync": sync,
        "seed": args.seed, "min_block_seconds": 0.0,
    }  # fmt: skip
    results: dict[str, Any] = {
        "command": "python -m keisei_plugin_fused_se.bench " + " ".join(sys.argv[1:]),
        "model": args.model,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": args.device,
        "fused_units": len(names),
        "threads": torch.get_num_threads(),
        "cpu_isa": cpu_kernel_isa() if args.device == "cpu" else None,
        "torch": torch.__version__,
        "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    modes = ("forward", "train") if args.mode == "both" else (args.mode,)
    for mode in modes:
        if mode == "forward":
            eager.eval()
            fused.eval()
            obs, masks = inputs.observations(), inputs.legal_masks()
            calls = {"eager": act_call(eager, obs, masks), "fused": act_call(fused, obs, masks)}
        else:
            eager.train()
            fused.train()
            batch = inputs.rollout_batch()
            calls = {"eager": ppo_step(eager, batch), "fused": ppo_step(fused, batch)}
        timings = measure_interleaved(calls, **settings)  # type: ignore[arg-type]
        ratio = paired_ratio(timings["eager"], timings["fused"])
        results[mode] = {
            "eager_ms": timings["eager"].median * 1e3,
            "fused_ms": timings["fused"].median * 1e3,
            "fused_vs_eager": ratio.median,
            "ratio_q1": ratio.q1,
            "ratio_q3": ratio.q3,
            "samples": ratio.n,
        }
    results["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return results


def format_model_results(results: dict[str, Any]) -> str:
    lines = [
        f"{results['model']}: eager vs fused-se ({results['fused_units']} SE units fused), batch "
        f"{results['batch']}, {results['dtype']} on {results['device']} ({results['threads']} threads, "
        f"kernel ISA {results['cpu_isa']}, torch {results['torch']})",
        f"load average before/after: {results['load_average_before']} / {results['load_average_after']}",
        f"{'mode':8} {'eager ms':>10} {'fused ms':>10} {'fused/eager (paired median, IQR)':>34} {'n':>4}",
    ]
    for mode in ("forward", "train"):
        if mode in results:
            r = results[mode]
            lines.append(
                f"{mode:8} {r['eager_ms']:10.1f} {r['fused_ms']:10.1f} "
                f"{r['fused_vs_eager']:13.3f}x ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}) {r['samples']:>10}"
            )
    lines.append("forward = get_action_and_value in eval mode; train = one PPO update step (Adam)")
    return "\n".join(lines)


def format_results(results: dict[str, Any]) -> str:
    b, c, h, w = results["shape"]
    lines = [
        f"SE unit {'FiLM' if results['film'] else 'plain'}: B={b} C={c} {h}x{w} hidden={results['hidden']} "
        f"{results['dtype']} {'channels-last' if results['channels_last'] else 'NCHW'} on {results['device']}"
        f" ({results['threads']} threads, kernel ISA {results['cpu_isa']}, torch {results['torch']})",
        f"max |fused - eager| = {results['max_abs_difference']:.3g}; load average before/after: "
        f"{results['load_average_before']} / {results['load_average_after']}",
        f"{'mode':8} {'eager µs':>10} {'compiled µs':>12} {'fused µs':>10} {'fused/eager':>12} {'fused/compiled':>15}",
    ]
    for mode in ("forward", "train"):
        if mode not in results:
            continue
        r = results[mode]
        lines.append(
            f"{mode:8} {r['eager_us']:10.1f} {r['compiled_us']:12.1f} {r['fused_us']:10.1f} "
            f"{r['fused_vs_eager']:11.2f}x {r['fused_vs_compiled']:14.2f}x"
        )
    for mode in ("forward", "train"):
        faults = results.get(mode, {}).get("page_faults_per_call")
        if faults:
            counts = ", ".join(f"{name} {faults[name]:.0f}" for name in ("eager", "compiled", "fused"))
            lines.append(f"minor page faults per {mode} call (5 rounds after the timing): {counts}")
    lines.append("speedups are medians of per-round ratios (interleaved rounds); IQR/median per form in --json")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(_parser().parse_args(argv))


def run_command(ctx: Any) -> int:
    """``keisei fused-se-bench ...``: the same bench as a keisei command."""
    return run_parsed(ctx.args)


def run_parsed(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from keisei_core.plugin import KeiseiError

    try:
        results = run_model(args) if args.model else run(args)
    except KeiseiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_model_results(results) if args.model else format_results(results))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
