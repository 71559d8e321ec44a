"""The ``fused-se`` strategy: the swap, its registration, and validated compiles
(``fused-se`` and ``fused-se+inductor``) through keisei_core.compile."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from keisei_plugin_fused_se.module import FusedSEFunction, FusedSEUnit, fuse_se_units
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.nn.se import SEFunction, SEUnit, SqueezeExcitation, SqueezeExcitationFiLM


class ToyBlock(nn.Module):
    def __init__(self, width: int, se: SEUnit) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.bn(self.conv(x)), x)


class ToyTower(ActorCriticMixin, nn.Module):
    """A small actor-critic with a plain SE and an SE-FiLM block."""

    observation_shape = (4, 9, 9)
    num_actions = 12

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, width, 3, padding=1)
        self.blocks = nn.Sequential(
            ToyBlock(width, SqueezeExcitation(width, 4)),
            ToyBlock(width, SqueezeExcitationFiLM(width, 5)),
        )
        self.policy = nn.Linear(width * 81, self.num_actions)
        self.value = nn.Linear(width * 81, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(torch.relu(self.stem(obs))).flatten(1)
        return self.policy(x), self.value(x).squeeze(-1)


class ScaledSE(SqueezeExcitation):
    """Different math (a subclass overriding forward): must be left alone."""

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(y, residual)


def test_swap_shares_parameters_and_keeps_the_state_dict() -> None:
    torch.manual_seed(0)
    model = ToyTower()
    shared = SqueezeExcitation(16, 4)
    model.extra_a = shared  # one unit reachable under two names
    model.extra_b = shared
    model.odd = ScaledSE(16, 4)
    before = model.state_dict(keep_vars=True)

    fused, skipped = fuse_se_units(model)

    assert sorted(fused) == ["blocks.0.se", "blocks.1.se", "extra_a"]
    assert skipped == {"odd": "ScaledSE overrides the SE math"}
    assert isinstance(model.extra_a, FusedSEUnit) and model.extra_a is model.extra_b
    assert type(model.odd) is ScaledSE
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before)
    assert all(after[k] is before[k] for k in before), "parameters must be the same objects"
    assert fuse_se_units(model) == ([], {"odd": "ScaledSE overrides the SE math"})  # idempotent


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_swapped_model_matches_eager_outputs_and_gradients(mode: str) -> None:
    torch.manual_seed(1)
    eager = ToyTower()
    fused = copy.deepcopy(eager)
    assert len(fuse_se_units(fused)[0]) == 2
    eager.train(mode == "train")
    fused.train(mode == "train")
    obs = torch.randn(6, 4, 9, 9)
    logits_e, value_e = eager(obs)
    logits_f, value_f = fused(obs)
    torch.testing.assert_close(logits_f, logits_e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value_f, value_e, atol=1e-5, rtol=1e-5)
    (logits_e.square().mean() + value_e.square().mean()).backward()
    (logits_f.square().mean() + value_f.square().mean()).backward()
    grads_e = dict(eager.named_parameters())
    for name, param in fused.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        torch.testing.assert_close(param.grad, grads_e[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_plugin_registers_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from keisei_core.plugins import PluginHost\n"
        "host = PluginHost(env={'KEISEI_PLUGINS': 'fused-se'}).load()\n"
        "spec = host.strategies.get('fused-se')\n"
        "assert spec.kind == 'transform' and spec.training, spec\n"
        "probe = host.probes.get('se-op')\n"
        "assert probe.unit == 'x' and probe.higher_is_better\n"
        "assert 'torch' not in sys.modules, 'listing imported torch'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr


def test_compile_model_validates_fused_se_in_eval_and_train() -> None:
    from keisei_core.compile import compile_model

    torch.manual_seed(2)
    model = ToyTower()
    compiled, report = compile_model(model, "fused-se", batch_sizes=(1, 8))
    assert report.status == "compiled", report.reason
    assert report.modes == ("eval", "train")
    assert report.notes["fused_se_units"] == 2
    assert list(compiled.state_dict()) == list(model.state_dict())
    assert sum(isinstance(m, FusedSEUnit) for m in compiled.modules()) == 2
    assert not any(isinstance(m, FusedSEUnit) for m in model.modules()), "the input model was modified"


def test_composes_before_a_compiler() -> None:
    """``fused-se`` is a transform: it may precede any compiler (``fused-se+inductor``);
    the next test compiles that composition end to end."""
    from keisei_core.api import list_strategies
    from keisei_core.compile import CompositionError, parse_composition
    from keisei_core.plugins import get_host

    strategies = get_host().strategies
    compilers = [r.name for r in list_strategies() if r.spec.kind == "compiler"]
    for compiler in compilers:
        composition = parse_composition(f"fused-se+{compiler}", strategies)
        assert composition.names == ("fused-se", compiler)
    with pytest.raises(CompositionError):
        parse_composition("eager+fused-se", strategies)


@pytest.mark.slow
def test_fused_se_plus_inductor_compiles_validates_and_runs_the_op_in_the_graph() -> None:
    """``fused-se+inductor`` end to end on a small model: validated against eager in eval
    and train mode, no graph break around the custom op, and the PPO methods run the
    fused op from inside Inductor's code (the profiler sees the CPU kernel once per unit
    inside the compiled region)."""
    from keisei_core.api import list_strategies
    from keisei_core.compile import compile_model

    if "inductor" not in {r.name for r in list_strategies()}:
        pytest.skip("keisei-plugin-inductor is not installed")
    torch.manual_seed(3)
    model = ToyTower(width=8)
    compiled, report = compile_model(model, "fused-se+inductor", batch_sizes=(8,))
    assert report.status == "compiled", report.reason
    assert report.modes == ("eval", "train")
    assert report.notes["fused_se_units"] == 2
    assert all(check.passed for check in report.checks)
    # One graph per (shape bucket, mode): validation runs batch 8 and the off-bucket 3
    # (bucket 2-15) and 33 (bucket 16+), eval without grad and train with grad. A graph
    # break at the custom op would split each of them.
    assert report.batch_sizes == (8, 3, 33)
    assert report.graphs <= 4, report.graphs
    assert list(compiled.state_dict()) == list(model.state_dict())

    obs = torch.zeros(8, 4, 9, 9)
    obs[:, 0, 4, 4] = 1.0
    masks = torch.ones(8, ToyTower.num_actions, dtype=torch.bool)
    compiled.eval()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile, torch.no_grad():
        compiled.get_action_and_value(obs, masks, deterministic=True)
    names = [event.name for event in profile.events()]
    # The CPU kernel runs once per SE unit (two units, one acting call).
    assert names.count("keisei_fused_se::se_unit_cpu") == 2, sorted(set(names))
    assert any(name.startswith("Torch-Compiled Region") for name in names), sorted(names)


@pytest.mark.slow
def test_restower_small_with_fused_se() -> None:
    """End to end on the ResTower plugin's model, when that plugin is installed."""
    from keisei_core.api import list_models
    from keisei_core.compile import compile_model

    if "restower-small" not in {r.name for r in list_models()}:
        pytest.skip("keisei-plugin-restower is not installed")
    from keisei_core.api import build_model

    model = build_model("restower-small")
    _, report = compile_model(model, "fused-se", batch_sizes=(2,))
    assert report.status == "compiled", report.reason
    assert report.notes["fused_se_units"] >= 1


class OwnWeightsBlock(nn.Module):
    """A block that owns its SE weights as Linear layers (Keisei 2026's layout) and calls a
    parameter-free SEFunction with them."""

    def __init__(self, width: int, hidden: int, film: bool, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.se_fc1 = nn.Linear(width, hidden, bias=bias)
        self.se_fc2 = nn.Linear(hidden, width * (2 if film else 1), bias=bias)
        self.se = SEFunction(film=film)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x), x, self.se_fc1.weight, self.se_fc1.bias, self.se_fc2.weight, self.se_fc2.bias)


class ScaledSEFunction(SEFunction):
    def forward(self, y: torch.Tensor, residual: torch.Tensor, *weights: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        return 2 * super().forward(y, residual, *weights)  # type: ignore[arg-type]


def test_se_function_swap_keeps_the_state_dict_and_leaves_other_math_alone() -> None:
    model = nn.Sequential(OwnWeightsBlock(8, 3, film=True, bias=True), OwnWeightsBlock(8, 3, film=False, bias=False))
    model.odd = ScaledSEFunction(film=False)
    before = model.state_dict(keep_vars=True)
    fused, skipped = fuse_se_units(model)
    assert sorted(fused) == ["0.se", "1.se"]
    assert skipped == {"odd": "ScaledSEFunction overrides the SE math"}
    first, second = model[0].se, model[1].se
    assert isinstance(first, FusedSEFunction) and isinstance(second, FusedSEFunction)
    assert first.film and not second.film
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)
    assert fuse_se_units(model)[0] == []  # idempotent


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 24),
    hidden=st.integers(1, 9),
    film=st.booleans(),
    bias=st.booleans(),
    batch=st.integers(1, 5),
    board=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_fused_se_function_matches_eager_outputs_and_gradients(
    width: int, hidden: int, film: bool, bias: bool, batch: int, board: int, seed: int
) -> None:
    torch.manual_seed(seed)
    eager = OwnWeightsBlock(width, hidden, film, bias)
    fused = copy.deepcopy(eager)
    assert fuse_se_units(fused)[0] == ["se"]
    x = torch.randn(batch, width, board, board)
    out_e, out_f = eager(x), fused(x)
    torch.testing.assert_close(out_f, out_e, atol=1e-5, rtol=1e-5)
    out_e.square().mean().backward()
    out_f.square().mean().backward()
    grads_e = dict(eager.named_parameters())
    for name, param in fused.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        torch.testing.assert_close(param.grad, grads_e[name].grad, atol=1e-5, rtol=1e-4, msg=name)
