"""Local launch: ``world_size`` ranks on this machine with torch.multiprocessing (spawn,
or a forkserver that imported torch once).

The parent hosts the rendezvous store on a socket it binds to 127.0.0.1 with port 0 (the
kernel picks a free port, and the bound socket is handed to the TCPStore, so no other
process can take the port in between and nothing listens on another address).

Every launch is bounded: the ranks must all finish within ``timeout_seconds``. When one
rank raises or dies, the others get a short grace period to fail on their own (their
errors are usually the consequence: a closed connection), then every rank still alive
is stopped (SIGTERM, then SIGKILL) and one :class:`DistributedProbeError` line says
which rank failed first and how. A hang ends the same way at the deadline, quoting
each rank's last phase. No process outlives the launch, whatever happens (Ctrl-C too).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import re
import signal
import socket
import time
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import Any

from keisei_plugin_distributed.options import DistributedProbeError

FAILURE_GRACE_SECONDS = 3.0
STOP_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.5
LOG_TAIL_LINES = 3
SECONDARY_CHARS = 120  # the other ranks' errors are mostly consequences: kept short
# Errors that are consequences of another rank's failure, not causes.
_SECONDARY_MARKERS = ("connection closed", "connection reset", "broken pipe", "timed out", "timeout", "peer")


def loopback_store(timeout: float) -> tuple[Any, int]:
    """A TCPStore server listening on 127.0.0.1 only, on a port the kernel chose."""
    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = int(sock.getsockname()[1])
        store = dist.TCPStore(
            "127.0.0.1", port, is_master=True, wait_for_workers=False,
            timeout=timedelta(seconds=timeout), master_listen_fd=sock.fileno(),
        )
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the store owns the descriptor now and closes it when it goes
    return store, port


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def _phase(scratch: Path, rank: int) -> str:
    try:
        return (scratch / f"rank-{rank}.phase").read_text(encoding="utf-8").strip() or "starting"
    except OSError:
        return "starting (no phase reported)"


_QUALIFIED_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*:)")


def _traceback(error_file: str) -> str | None:
    """The traceback a rank left (torch.multiprocessing writes it when a rank raises)."""
    try:
        with open(error_file, "rb") as handle:
            return str(pickle.load(handle))
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def _raised(error_file: str) -> str | None:
    """The last line of the traceback a rank left, if any."""
    trace = _traceback(error_file)
    if trace is None:
        return None
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    if not lines:
        return "an exception"
    # "package.module.SomeError: text" -> "SomeError: text"
    return _QUALIFIED_EXCEPTION.sub(r"\1", lines[-1])


def _outcome(process: Any, error_file: str, scratch: Path, rank: int) -> str | None:
    """How a rank ended, in a few words; None for a clean exit."""
    raised = _raised(error_file)
    if raised is not None:
        return f"raised {raised}"
    code = process.exitcode
    if code is None:
        return f"still running in phase '{_phase(scratch, rank)}' (stopped)"
    if code == 0:
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"died from {name}"
    else:
        how = f"exited with status {code}"
    tail = _tail(scratch / f"rank-{rank}.log")
    return f"{how} in phase '{_phase(scratch, rank)}'" + (f" (log: {tail})" if tail else "")


def _details(processes: Sequence[Any], error_files: Sequence[str], scratch: Path) -> str:
    """Every rank's traceback and log tail, for failures.log (the cell reason is one line)."""
    parts = []
    for rank, process in enumerate(processes):
        trace = _traceback(error_files[rank])
        tail = _tail(scratch / f"rank-{rank}.log", lines=20)
        parts.append(
            f"-- rank {rank}: exit code {process.exitcode}, phase '{_phase(scratch, rank)}'\n"
            + (trace.rstrip() + "\n" if trace else "")
            + (f"log: {tail}\n" if tail else "")
        )
    return "".join(parts)


def _is_secondary(outcome: str) -> bool:
    low = outcome.lower()
    return "(stopped)" in low or any(marker in low for marker in _SECONDARY_MARKERS)


def failure_message(outcomes: Sequence[str | None], first: int, world_size: int) -> str:
    """One line: the first rank that failed for a reason of its own, then the others."""
    failed = [(rank, text) for rank, text in enumerate(outcomes) if text is not None]
    primary = next(((r, t) for r, t in failed if r == first and not _is_secondary(t)), None)
    primary = primary or next(((r, t) for r, t in failed if not _is_secondary(t)), None)
    primary = primary or next(((r, t) for r, t in failed if r == first), failed[0])
    others = [
        f"rank {r} the same" if t == primary[1] else f"rank {r} {_shorten(t)}" for r, t in failed if r != primary[0]
    ]
    text = f"train-step-ddp: rank {primary[0]} of {world_size} {primary[1]}"
    if others:
        text += "; then " + "; ".join(others)
    return text


def _shorten(text: str, limit: int = SECONDARY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stop_processes(processes: Sequence[Any], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every live process, then SIGKILL whatever is left after ``grace`` seconds."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join()


def _join_within(processes: Sequence[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))


# What a forkserver imports once, so that forked ranks start without importing torch.
FORKSERVER_PRELOAD = [
    "torch",
    "torch.distributed",
    "torch._dynamo",  # imported by the first optimizer step: seconds per rank otherwise
    "keisei_core.bench.child",
    "keisei_core.timing",
    "keisei_core.plugins",
    "keisei_plugin_distributed.worker",
]


def launch_local(
    task: dict[str, Any], *, world_size: int, timeout: float, scratch: Path, start_method: str = "spawn"
) -> dict[str, Any]:
    """Run :func:`keisei_plugin_distributed.worker.spawn_entry` on ``world_size`` ranks
    and return rank 0's summary; any failure or the deadline raises
    :class:`DistributedProbeError` after every rank has been stopped."""
    import torch.multiprocessing as mp

    from keisei_plugin_distributed.worker import RESULT_FILE, spawn_entry

    scratch.mkdir(parents=True, exist_ok=True)
    # A forkserver keeps the environment it started with: ranks take this one explicitly.
    task = {**task, "scratch": str(scratch), "environment": dict(os.environ), "launched_at": time.time()}
    if start_method == "forkserver":
        multiprocessing.set_forkserver_preload(FORKSERVER_PRELOAD)
    store, port = loopback_store(timeout)
    context: Any = None
    try:
        context = mp.start_processes(
            spawn_entry, args=(task, world_size, port), nprocs=world_size, join=False, start_method=start_method
        )
        # From here on the ranks are running (a forkserver's one-time import is behind us).
        deadline = time.monotonic() + timeout
        processes, error_files = context.processes, context.error_files
        pending = {process.sentinel: rank for rank, process in enumerate(processes)}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                phases = ", ".join(f"rank {r}: '{_phase(scratch, r)}'" for r in sorted(pending.values()))
                error = DistributedProbeError(
                    f"train-step-ddp: {len(pending)} of {world_size} rank(s) did not finish within "
                    f"{timeout:g} s ({phases}); all ranks were stopped"
                )
                if hasattr(error, "add_note"):
                    error.add_note(_details(processes, error_files, scratch))
                raise error
            ready = wait_for_any(list(pending), timeout=min(remaining, POLL_SECONDS))
            for sentinel in ready:
                rank = pending.pop(sentinel)
                processes[rank].join()
                if processes[rank].exitcode != 0:
                    # The others usually fail on their own within moments (closed connections);
                    # their outcomes are then reported as consequences.
                    _join_within(processes, FAILURE_GRACE_SECONDS)
                    outcomes = [_outcome(p, error_files[r], scratch, r) for r, p in enumerate(processes)]
                    error = DistributedProbeError(failure_message(outcomes, rank, world_size))
                    if hasattr(error, "add_note"):  # Python 3.11+: the engine's failures.log shows notes
                        error.add_note(_details(processes, error_files, scratch))
                    raise error
        result_path = scratch / RESULT_FILE
        try:
            summary: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DistributedProbeError(f"train-step-ddp: rank 0 exited cleanly but left no result ({exc})") from None
        return summary
    finally:
        if context is not None:
            stop_processes(context.processes)
            for path in context.error_files:
                if path and os.path.exists(path):
                    os.unlink(path)
        del store
