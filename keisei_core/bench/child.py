"""Work that needs a fresh process: peak resident memory, cold/warm compile time, and whole
groups of cells for the child-process executor (:mod:`keisei_core.bench.executors`).

The parent sends a JSON task on stdin (``python -m keisei_core.bench.child``); the child
loads the same plugins, rebuilds the cell's model from its registered name and options,
applies the strategy, runs the workload and prints one JSON line prefixed with
:data:`RESULT_PREFIX`. Peak RSS is the child's own high-water mark (``VmHWM`` in
``/proc/self/status`` on Linux): a process of its own, so earlier cells of the run cannot
inflate it. ``getrusage(...).ru_maxrss`` is not used on Linux because the kernel carries it
across fork + exec, so a child of a large parent would start at the parent's peak.

Probes of plugins that need a fresh process of their own reuse the pieces:
:func:`run_child` with their ``module``, :func:`child_main` as that module's entry,
:func:`build_probe_context` to rebuild the cell, and the RSS readers.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from keisei_core.oneline import one_line

RESULT_PREFIX = "KEISEI_CHILD_RESULT "
CHILD_MODULE = "keisei_core.bench.child"


class ChildError(RuntimeError):
    """The child process failed, timed out or printed no result."""


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes, or None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        return None
    return None


def _ownpeak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_rss_bytes() -> int:
    """This process's resident high-water mark (``VmHWM``; ``ru_maxrss`` where there is no
    /proc, i.e. not Linux, where it is the process's own peak)."""
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else _ownpeak_rss_bytes()


def current_rss_bytes() -> int:
    """This process's resident size now (``VmRSS``; the peak where there is no /proc)."""
    current = _status_bytes("VmRSS")
    return current if current is not None else _ownpeak_rss_bytes()


def reset_peak_rss() -> bool:
    """Restart ``VmHWM`` from the current resident size (Linux >= 4.0), so a following
    peak covers only what runs after; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def run_child(
    task: Mapping[str, Any],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    module: str = CHILD_MODULE,
) -> dict[str, Any]:
    """Run ``task`` in a fresh interpreter (``python -m module``, default this module) and
    return its result dict, bounded by ``timeout``. A plugin's own child measurement passes
    its module, whose ``__main__`` calls :func:`child_main`."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module],
            input=json.dumps(dict(task)),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChildError(f"child measurement ({module}) did not finish within {timeout:.0f} s") from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if "error" in result:
                raise ChildError(f"child measurement ({module}) failed: {result['error']}")
            return result
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    how = f"exited with status {proc.returncode}"
    if proc.returncode < 0:  # killed: SIGKILL is what the kernel's out-of-memory killer sends
        how = f"was killed by {_signal_name(-proc.returncode)} (status {proc.returncode})"
    raise ChildError(f"child measurement ({module}) {how} and no result" + (f": {tail}" if tail else ""))


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def child_main(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The child side of :func:`run_child`: read the task from stdin, run ``measure`` and
    print its result (or the error, in one line) after :data:`RESULT_PREFIX`."""
    try:
        result = measure(json.loads(sys.stdin.read()))
    except Exception as exc:  # reported to the parent as one line, which records the cell failed
        result = {"error": one_line(exc, limit=400)}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def build_probe_context(task: Mapping[str, Any], host: Any) -> Any:
    """The cell, rebuilt in a child: a ProbeContext around a fresh eager model from the
    task's model name, options, seed, device, dtype and mode (strategy not applied yet)."""
    import torch

    from keisei_core.bench.probe_api import ProbeContext
    from keisei_core.config.experiment import BenchSettings
    from keisei_core.introspect import model_shapes
    from keisei_core.models import build_from_spec, resolve_options

    spec = host.models.get(task["model"])
    options = resolve_options(spec, task["options"])
    torch.manual_seed(int(task["seed"]))
    eager = build_from_spec(spec, options)
    context = ProbeContext(
        model=eager,
        eager_model=eager,
        model_name=task["model"],
        model_options=dict(task["options"]),
        strategy=task["strategy"],
        batch_size=int(task["batch_size"]),
        device=task["device"],
        dtype=task["dtype"],
        seed=int(task["seed"]),
        settings=BenchSettings(),
        threads=int(task["threads"]),
        scratch_dir=Path(task.get("scratch", ".")),
        observation_shape=model_shapes(eager).observation,
        num_actions=model_shapes(eager).num_actions,
        training=bool(task["training"]),
    )
    context.eager_model = context.model = eager.to(device=context.device, dtype=context.torch_dtype)
    eager.train(context.training)
    return context


def _workload(context: Any, model: Any) -> Any:
    from keisei_core.bench.workloads import act_call, ppo_step

    if context.training:
        return ppo_step(model, context.rollout_batch())
    return act_call(model, context.observations(), context.legal_masks())


def apply_cell_strategy(context: Any, host: Any) -> tuple[Any, Any]:
    """The cell's strategy applied and validated at the cell's batch size, as the engine does."""
    from keisei_core.bench.strategies import apply_strategy

    return apply_strategy(
        host, context.strategy, context.eager_model,
        device=context.device, dtype=context.dtype, batch_sizes=(context.batch_size,),
        training=context.training, example_obs=context.observations(),
    )


def _measure(task: Mapping[str, Any]) -> dict[str, Any]:
    if task["kind"] == "group":  # a whole group of cells (the child-process executor)
        from keisei_core.bench.executors import run_group_task

        return run_group_task(task)
    baseline = peak_rss_bytes()
    import torch

    torch.set_num_threads(int(task["threads"]))
    from keisei_core.plugins import PluginHost

    host = PluginHost(list(task.get("plugins", [])), warn=lambda _message: None).load()
    after_import = peak_rss_bytes()
    context = build_probe_context(task, host)
    after_build = peak_rss_bytes()
    result: dict[str, Any] = {
        "rss_start_bytes": baseline,
        "rss_after_import_bytes": after_import,
        "rss_after_build_bytes": after_build,
    }
    if task["kind"] == "memory":
        model, _report = apply_cell_strategy(context, host)
        after_apply = peak_rss_bytes()
        work = _workload(context, model)
        for _ in range(int(task.get("repeats", 3))):
            work()
        result.update(rss_after_apply_bytes=after_apply, rss_peak_bytes=peak_rss_bytes())
    elif task["kind"] == "compile":
        eager_work = _workload(context, context.eager_model)
        start = time.perf_counter()
        eager_work()
        result["eager_first_call_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        model, report = apply_cell_strategy(context, host)
        applied = time.perf_counter()
        # The compile report splits applying + the first compiled call from validation.
        result.update(
            report_compile_seconds=report.compile_seconds if report is not None else None,
            report_validation_seconds=report.validation_seconds if report is not None else None,
            warm_start=report.warm_start if report is not None else None,
        )
        _workload(context, model)()
        if context.device == "cuda":
            torch.cuda.synchronize()
        done = time.perf_counter()
        result.update(apply_seconds=applied - start, first_call_seconds=done - applied, compile_seconds=done - start)
    else:
        raise ValueError(f"unknown child task kind {task['kind']!r}")
    return result


def main() -> int:
    return child_main(_measure)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
