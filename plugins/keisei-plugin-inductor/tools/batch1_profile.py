"""Where the time goes at batch 1 (what a self-play actor runs), per strategy.

For each strategy: the network alone (``model(obs)``) and the acting call
(``get_action_and_value(obs, legal_mask)``), timed interleaved call by call (medians),
so "PPO-method overhead" is the acting call minus the network in the same rounds; then
``torch.profiler`` over acting calls, listing the operators with the most self CPU time.

    .venv/bin/python plugins/keisei-plugin-inductor/tools/batch1_profile.py \\
        --strategies eager,int8,channels-last+bf16+inductor-freeze --rounds 200

A development tool (docs/compilation.md quotes its output), not part of the package.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from keisei_core import build_model, compile_model
from keisei_core.observations import make_legal_masks, make_observations


def _time(call, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="restower")
    parser.add_argument("--strategies", default="eager,int8,channels-last+bf16+inductor-freeze")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eager = build_model(args.model).eval()
    obs = make_observations(1, 46, 9, seed=3)
    masks = make_legal_masks(1, eager.num_actions, seed=3)
    models = {}
    for name in args.strategies.split(","):
        model, report = compile_model(eager, name, batch_sizes=(1,), training=False)
        print(report.summary(), flush=True)
        models[name] = model.eval()
    rows = []
    with torch.no_grad():
        for model in models.values():  # warm up every graph
            for _ in range(5):
                model.get_action_and_value(obs, masks)
        net: dict[str, list[float]] = {n: [] for n in models}
        act: dict[str, list[float]] = {n: [] for n in models}
        for _ in range(args.rounds):  # interleaved: machine load hits every row alike
            for name, model in models.items():
                net[name] += _time(lambda m=model: m(obs), 1)
                act[name] += _time(lambda m=model: m.get_action_and_value(obs, masks), 1)
        base = statistics.median(act["eager"]) if "eager" in act else None
        for name in models:
            n, a = statistics.median(net[name]), statistics.median(act[name])
            rows.append((name, n, a, a - n, base / a if base else float("nan")))
    print(f"\nbatch 1, {args.rounds} interleaved rounds, {args.threads} threads, medians")
    print(f"{'strategy':40s} {'network ms':>11s} {'acting ms':>10s} {'PPO overhead ms':>16s} {'acting x eager':>15s}")
    for name, n, a, o, x in rows:
        print(f"{name:40s} {n:11.2f} {a:10.2f} {o:16.2f} {x:15.2f}")
    for name, model in models.items():
        with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(20):
                model.get_action_and_value(obs, masks)
        print(f"\n== {name}: 20 acting calls, top operators by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=55))


if __name__ == "__main__":
    main()
