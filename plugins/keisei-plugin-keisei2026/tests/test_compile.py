"""Compile strategies on the 2026 SE-ResNet, validated head by head (slow tier: compiles).

One session-scoped Inductor compile of the tiny preset serves every test here; the
operator-level transforms run in the fast tier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import torch

from keisei_core.compile import compile_model
from keisei_core.compile.tolerances import resolve_tolerance
from keisei_core.heads import read_outputs
from keisei_core.spaces import legal_masks_for, observations_for

HEADS = {"logits", "value", "value_wdl", "score"}


@pytest.fixture(scope="module")
def inductor_compiled(build: Callable[..., Any]) -> tuple[Any, Any, Any]:
    eager = build("keisei2026-se-resnet-tiny").eval()
    compiled, report = compile_model(eager, "inductor", batch_sizes=(1, 4), fallback=False)
    return eager, compiled, report


@pytest.mark.slow
def test_inductor_validates_every_head_in_eval_and_train(inductor_compiled: tuple[Any, Any, Any]) -> None:
    _, _, report = inductor_compiled
    assert report.status == "compiled", report.reason
    forward = {(c.mode, c.output) for c in report.checks if c.method == "forward"}
    for mode in ("eval", "train"):
        assert {(mode, head) for head in HEADS} <= forward, f"{mode}: {sorted(forward)}"
    assert all(c.passed for c in report.checks)
    assert any(c.method == "backward" for c in report.checks)


@pytest.mark.slow
def test_inductor_model_acts_like_eager_on_fresh_inputs(inductor_compiled: tuple[Any, Any, Any]) -> None:
    eager, compiled, _ = inductor_compiled
    obs, masks = observations_for(eager, 3, seed=77), legal_masks_for(eager, 3, seed=77)
    with torch.no_grad():
        want = read_outputs(eager, eager(obs)).heads()
        got = read_outputs(eager, compiled.eval()(obs)).heads()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)
        action, _log_prob, value = compiled.get_action_and_value(obs, masks, deterministic=True)
    assert bool(masks.gather(1, action[:, None]).all())
    torch.testing.assert_close(value, want["value"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strategy", ["channels-last", "bf16"])
def test_transforms_validate_every_head(build: Callable[..., Any], strategy: str) -> None:
    eager = build("keisei2026-se-resnet-tiny").eval()
    # bf16's train-mode gradients of this 16-channel model are noisy: relative L2 errors of
    # 0.06-0.21 on seeds 0-2 (the fixture seeds 0: 0.207 at batch 3) and up to 0.58 on an
    # unseeded draw, measured, against the bound 0.35 set for full-width towers. This tiny one
    # gets 0.45 for gradients, with the weights fixed.
    tolerances = {"bfloat16": attrs.evolve(resolve_tolerance("bfloat16", None), grad_rtol=0.45)}
    _, report = compile_model(eager, strategy, batch_sizes=(4,), fallback=False, tolerances=tolerances)
    assert report.status == "compiled", report.reason
    assert {c.output for c in report.checks if c.method == "forward"} >= HEADS


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fused_se_fuses_every_2026_block_and_keeps_upstream_keys(build: Callable[..., Any], mode: str) -> None:
    """The 2026 block keeps its SE-FiLM weights as its own Linear layers (upstream's keys
    ``blocks.N.se_fc1/se_fc2``) and calls a parameter-free SEFunction with them, which
    fused-se swaps for the fused kernel: every block fused, the state_dict unchanged,
    every head validated against eager (docs/models.md)."""
    pytest.importorskip("keisei_plugin_fused_se")
    eager = build("keisei2026-se-resnet-tiny").train(mode == "train")
    keys = list(eager.state_dict())
    compiled, report = compile_model(eager, "fused-se", batch_sizes=(2,), fallback=False)
    assert report.status == "compiled", report.reason
    assert report.notes["fused_se_units"] == len(eager.blocks)
    assert list(compiled.state_dict()) == keys
    assert {c.output for c in report.checks if c.method == "forward"} >= HEADS


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["onnxruntime", "openvino", "openvino-int8", "int8", "int8-aot"])
def test_graph_runtimes_return_every_head(build: Callable[..., Any], strategy: str) -> None:
    """A strategy that runs its own graph instead of the module (ONNX Runtime, OpenVINO,
    OpenVINO int8, PT2E int8 through torch.compile or an AOTInductor package) returns the
    multi-head model's extra heads too: each validated against eager (int8 at the policy
    level). Before, the int8 programs unpacked two outputs and OpenVINO refused four."""
    plugin = {"onnxruntime": "keisei_plugin_onnxruntime", "int8": "keisei_plugin_inductor",
              "int8-aot": "keisei_plugin_inductor"}.get(strategy, "keisei_plugin_openvino")
    pytest.importorskip(plugin)
    eager = build("keisei2026-se-resnet-tiny").eval()
    compiled, report = compile_model(eager, strategy, batch_sizes=(4,), training=False)
    assert report.status == "compiled", report.reason
    if report.precision == "int8":  # judged at the policy level (KL, top-1, value error)
        assert report.policy_checks and all(c.passed for c in report.policy_checks)
    else:
        assert {c.output for c in report.checks if c.method == "forward"} >= HEADS
    obs = observations_for(eager, 3, seed=5)
    with torch.no_grad():
        got = read_outputs(eager, compiled(obs)).heads()
        want = read_outputs(eager, eager(obs)).heads()
    assert set(got) == set(want) and len(want) == 4
    if report.precision != "int8":
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)
