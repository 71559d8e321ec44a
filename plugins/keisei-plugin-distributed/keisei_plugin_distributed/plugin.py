"""The keisei plugin: registers the ``train-step-ddp`` probe.

This is the module the entry point names; it imports neither torch nor the code that
needs it (:mod:`keisei_plugin_distributed.probe` is imported when a cell runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keisei_core.hookspecs import hookimpl
from keisei_core.specs import ProbeSpec
from keisei_plugin_distributed.options import PROBE_NAME, DdpOptions


def run_train_step_ddp(context: Any) -> Any:
    from keisei_plugin_distributed.probe import run_train_step_ddp as run

    return run(context)


@hookimpl
def keisei_register_probes(register: Callable[[ProbeSpec], None]) -> None:
    register(
        ProbeSpec(
            name=PROBE_NAME,
            run=run_train_step_ddp,
            description=(
                "global samples/s of PPO update steps under DistributedDataParallel (gloo on CPU, "
                "NCCL on GPU); per-rank rates and scaling efficiency against one rank in extra"
            ),
            unit="samples/s",
            needs_training=True,
            options=DdpOptions,
        )
    )
