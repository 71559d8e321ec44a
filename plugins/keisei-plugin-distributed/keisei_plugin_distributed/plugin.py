"""The keisei plugin: registers the ``train-step-ddp`` probe and the ``keisei ddp-bench`` command.

This is the module the entry point names; it imports neither torch nor the code that
needs it: the probe and the command are named by import string and imported when used.
"""

from __future__ import annotations

from keisei_core.plugin import CommandRegister, CommandSpec, ProbeRegister, ProbeSpec, hookimpl
from keisei_plugin_distributed.options import PROBE_NAME, DdpOptions

KEISEI_PLUGIN_API = "1.2"  # run_bench, Executor, Reporter (1.2)


@hookimpl
def keisei_register_probes(register: ProbeRegister) -> None:
    register(
        ProbeSpec(
            name=PROBE_NAME,
            run="keisei_plugin_distributed.probe:run_train_step_ddp",
            description=(
                "global samples/s of PPO update steps under DistributedDataParallel (gloo on CPU, "
                "NCCL on GPU); per-rank rates and scaling efficiency against one rank in extra"
            ),
            unit="samples/s",
            needs_training=True,
            options=DdpOptions,
        )
    )


@hookimpl
def keisei_register_commands(register: CommandRegister) -> None:
    register(
        CommandSpec(
            name="ddp-bench",
            run="keisei_plugin_distributed.torchrun:run_command",
            configure="keisei_plugin_distributed.torchrun:configure",
            help=(
                "under torchrun (torchrun --no-python ... keisei ddp-bench CONFIG): measure "
                "train-step-ddp for every cell of a bench config; rank 0 writes results.json"
            ),
        )
    )
