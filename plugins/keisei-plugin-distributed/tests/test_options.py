"""Options, plans and failure messages: no processes, no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from keisei_plugin_distributed.launch import failure_message
from keisei_plugin_distributed.options import parse_options, resolve_plan

from keisei_core.errors import ConfigError


def test_defaults_on_cpu_split_the_threads_among_two_ranks() -> None:
    plan = resolve_plan(parse_options({}), device="cpu", threads=8)
    assert (plan.world_size, plan.backend, plan.threads_per_rank, plan.start_method) == (2, "gloo", 4, "spawn")
    plan = resolve_plan(parse_options({"world_size": 3}), device="cpu", threads=2)
    assert (plan.world_size, plan.threads_per_rank) == (3, 1)


def test_defaults_on_cuda_use_every_gpu_and_nccl() -> None:
    plan = resolve_plan(parse_options({}), device="cuda", threads=16, gpus=4)
    assert (plan.world_size, plan.backend) == (4, "nccl")
    assert resolve_plan(parse_options({"backend": "gloo"}), device="cuda", threads=16, gpus=4).backend == "gloo"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"world_size": 0}, "world_size"),
        ({"world_sise": 2}, "unknown key"),
        ({"backend": "mpi"}, "backend"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"start_method": "fork"}, "start_method"),
        ({"world_size": "two"}, "world_size"),
    ],
)
def test_bad_options_are_one_config_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_options(data)
    assert "probe_options.train-step-ddp" in str(info.value) and "\n" not in str(info.value)


def test_nccl_on_cpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="'nccl' needs device 'cuda'"):
        resolve_plan(parse_options({"backend": "nccl"}), device="cpu", threads=2)


def test_failure_message_leads_with_the_cause_not_its_consequences() -> None:
    outcomes = [
        "raised RuntimeError: [../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234. "
        "This is typically caused by a remote worker crashing (what gloo says on the surviving rank)",
        "raised ValueError: injected",
        None,
    ]
    # Rank 0 was noticed first, but its error is the consequence of rank 1's.
    text = failure_message(outcomes, first=0, world_size=3)
    assert text.startswith("train-step-ddp: rank 1 of 3 raised ValueError: injected; then rank 0 raised")
    assert "; then rank 0 raised RuntimeError: [../gloo/" in text and text.endswith("...")
    assert failure_message([None, "exited with status 7 in phase 'x'"], first=1, world_size=2) == (
        "train-step-ddp: rank 1 of 2 exited with status 7 in phase 'x'"
    )
    same = "raised RuntimeError: building x failed on 1 rank(s): rank 0: ValueError: no"
    assert failure_message([same, same], first=1, world_size=2) == f"train-step-ddp: rank 1 of 2 {same}; then rank 0 the same"


def test_listing_the_plugin_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from keisei_core.plugins import PluginHost\n"
        "host = PluginHost([], env={'KEISEI_PLUGINS': 'distributed'}).load()\n"
        "assert 'train-step-ddp' in host.probes.names(), host.probes.names()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
