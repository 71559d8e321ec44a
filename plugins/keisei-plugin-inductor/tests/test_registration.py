"""What the plugin registers and declares, and that CUDA-only strategies skip on CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from keisei_core.api import build_model
from keisei_core.compile import compile_model, parse_composition
from keisei_core.plugins import PluginHost, get_host

# name -> (kind, devices, dtypes, training, precision): the support table of docs/compilation.md
DECLARED = {
    "inductor": ("compiler", {"cpu", "cuda"}, {"float32", "bfloat16", "float16"}, True, None),
    "inductor-max-autotune": ("compiler", {"cpu", "cuda"}, {"float32", "bfloat16", "float16"}, True, None),
    "inductor-reduce-overhead": ("compiler", {"cuda"}, {"float32", "bfloat16", "float16"}, True, None),
    "inductor-freeze": ("compiler", {"cpu"}, {"float32", "bfloat16"}, False, None),
    "aot-inductor": ("compiler", {"cpu", "cuda"}, {"float32", "bfloat16", "float16"}, False, None),
    "int8": ("compiler", {"cpu"}, {"float32"}, False, "int8"),
    "int8-aot": ("compiler", {"cpu"}, {"float32"}, False, "int8"),
    "channels-last": ("transform", {"cpu", "cuda"}, {"float32", "bfloat16", "float16"}, True, None),
    "bf16": ("transform", {"cpu", "cuda"}, {"float32"}, True, "bfloat16"),
    "fp16": ("transform", {"cuda"}, {"float32"}, True, "float16"),
}


def test_the_plugin_registers_its_strategies_as_documented() -> None:
    host = PluginHost(env={"KEISEI_PLUGINS": "inductor"}).load()
    record = host.record("inductor")
    assert record is not None and record.status == "loaded", record
    assert sorted(record.registered["strategies"]) == sorted(DECLARED)
    for name, (kind, devices, dtypes, training, precision) in DECLARED.items():
        spec = host.strategies.get(name)
        assert (spec.kind, set(spec.devices), set(spec.dtypes), spec.training, spec.precision) == (
            kind, devices, dtypes, training, precision,
        ), name


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, keisei_plugin_inductor.plugin; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_transforms_compose_before_any_compiler() -> None:
    strategies = get_host().strategies
    assert parse_composition("channels-last+bf16+aot-inductor", strategies).precision == "bfloat16"
    assert not parse_composition("bf16+inductor-freeze", strategies).training


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
@pytest.mark.parametrize("strategy", ["inductor-reduce-overhead", "fp16", "fp16+inductor", "bf16+inductor-reduce-overhead"])
def test_cuda_only_strategies_are_skipped_on_cpu_with_the_reason(strategy: str) -> None:
    model = build_model("actor-critic", conv_channels=2, num_actions=10)
    returned, report = compile_model(model, strategy)
    assert returned is model and report.status == "skipped"
    assert report.reason is not None and "runs on cuda only, not cpu" in report.reason
    assert report.checks == () and report.compile_seconds is None
