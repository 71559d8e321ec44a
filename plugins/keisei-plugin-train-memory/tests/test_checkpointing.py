"""activation-checkpointing: gradients and BatchNorm statistics equal eager's, state_dict
keys unchanged, less saved for backward, composition through the compile core."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from keisei_plugin_train_memory.checkpointing import (
    NoRepeatedBlocksError,
    apply_activation_checkpointing,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
    is_checkpointed,
)
from torch import nn

from keisei_core.actor_critic import ActorCriticMixin
from keisei_core.errors import KeiseiError
from keisei_core.observations import make_observations
from keisei_core.specs import StrategyContext

ACTIONS = 40


class Shapes:
    observation_shape = (46, 9, 9)
    num_actions = ACTIONS


class Block(nn.Module):
    """A residual conv block with BatchNorm, as in ResTower."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Tower(Shapes, ActorCriticMixin, nn.Module):
    keisei_repeated_blocks = ("blocks",)

    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(46, width, 3, padding=1)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.policy = nn.Linear(width * 81, ACTIONS)
        self.value = nn.Linear(width * 81, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(torch.relu(self.stem(obs))).flatten(1)
        return self.policy(x), self.value(x).squeeze(-1)


class TiedSteps(Shapes, ActorCriticMixin, nn.Module):
    """One weight-tied block applied several times, declared as a single module."""

    keisei_repeated_blocks = ("step",)

    def __init__(self) -> None:
        super().__init__()
        self.read = nn.Linear(46, 16)
        self.step = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU())
        self.head = nn.Linear(16 * 81, ACTIONS + 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.read(obs.flatten(2).transpose(1, 2))
        for _ in range(3):
            x = x + self.step(x)
        out = self.head(x.flatten(1))
        return out[:, :ACTIONS], out[:, ACTIONS]


class Plain(Shapes, ActorCriticMixin, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(46 * 81, ACTIONS + 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(obs.flatten(1))
        return out[:, :ACTIONS], out[:, ACTIONS]


def _loss(model: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    logits, value = model(obs)
    return logits.logsumexp(-1).mean() + value.square().mean()


def _train_step_pair(factory: type[nn.Module], batch: int, seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    eager = factory().train()
    checkpointed = apply_activation_checkpointing(copy.deepcopy(eager), StrategyContext(training=True))
    obs = make_observations(batch, seed=seed)
    for model in (eager, checkpointed):
        _loss(model, obs).backward()
    return eager, checkpointed


def _assert_same_grads_and_buffers(eager: nn.Module, other: nn.Module) -> None:
    for (name, a), (_, b) in zip(eager.named_parameters(), other.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)
    for (name, a), (_, b) in zip(eager.named_buffers(), other.named_buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


@settings(max_examples=3)
@given(batch=st.integers(2, 9), seed=st.integers(0, 2**16), factory=st.sampled_from([Tower, TiedSteps]))
def test_gradients_and_running_stats_equal_eager(batch: int, seed: int, factory: type[nn.Module]) -> None:
    eager, checkpointed = _train_step_pair(factory, batch, seed)
    _assert_same_grads_and_buffers(eager, checkpointed)


def test_state_dict_keys_unchanged_and_weights_load_both_ways() -> None:
    eager = Tower()
    checkpointed = apply_activation_checkpointing(copy.deepcopy(eager), StrategyContext(training=True))
    assert list(checkpointed.state_dict()) == list(eager.state_dict())
    fresh = Tower()
    fresh.load_state_dict(checkpointed.state_dict())
    checkpointed.load_state_dict(Tower().state_dict())


def test_blocks_wrapped_once_and_undone() -> None:
    model = Tower(depth=4)
    assert enable_activation_checkpointing(model) == 4
    assert enable_activation_checkpointing(model) == 4  # idempotent
    assert all(is_checkpointed(b) for b in model.blocks)
    assert all(b.forward.inner is None for b in model.blocks)
    assert disable_activation_checkpointing(model) == 4
    assert not any(is_checkpointed(b) for b in model.blocks)
    assert "forward" not in model.blocks[0].__dict__


def test_deepcopy_rebinds_to_the_copied_blocks() -> None:
    model = Tower()
    enable_activation_checkpointing(model)
    clone = copy.deepcopy(model)
    for block in clone.blocks:
        assert block.forward.module is block


def test_less_is_saved_for_backward() -> None:
    def saved_bytes(model: nn.Module) -> int:
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _loss(model, make_observations(8)).backward()
        return total

    eager = Tower(width=8, depth=4).train()
    checkpointed = apply_activation_checkpointing(copy.deepcopy(eager), StrategyContext(training=True))
    assert saved_bytes(checkpointed) < 0.5 * saved_bytes(eager)


def test_inference_runs_without_checkpoint_and_matches() -> None:
    eager = Tower().eval()
    checkpointed = apply_activation_checkpointing(copy.deepcopy(eager), StrategyContext())
    obs = make_observations(4)
    with torch.no_grad():
        for a, b in zip(eager(obs), checkpointed(obs), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_model_without_repeated_blocks_is_a_clear_error() -> None:
    with pytest.raises(NoRepeatedBlocksError, match="declares no repeated blocks") as info:
        apply_activation_checkpointing(Plain(), StrategyContext(training=True))
    assert isinstance(info.value, KeiseiError) and "\n" not in str(info.value)
    broken = Plain()
    broken.keisei_repeated_blocks = ("missing",)  # type: ignore[attr-defined]
    with pytest.raises(NoRepeatedBlocksError, match=r"'missing'.*not a submodule"):
        apply_activation_checkpointing(broken, StrategyContext(training=True))


def test_found_inside_a_wrapper_module() -> None:
    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

    wrapper = Wrapper(Tower(depth=2))
    assert enable_activation_checkpointing(wrapper) == 2


def test_research_families_gradients_equal_eager() -> None:
    pytest.importorskip("keisei_plugin_research")
    from keisei_core.api import build_model

    obs = make_observations(4, seed=9)
    for name in ("cell-lattice-tiny", "experts-with-ghosts-tiny", "square-transformer-tiny"):
        torch.manual_seed(0)
        eager = build_model(name, num_actions=300).train()
        checkpointed = apply_activation_checkpointing(copy.deepcopy(eager), StrategyContext(training=True))
        for model in (eager, checkpointed):
            _loss(model, obs).backward()
        _assert_same_grads_and_buffers(eager, checkpointed)


def test_validated_and_composed_through_compile_model() -> None:
    compile_api = pytest.importorskip("keisei_core.compile")
    from keisei_core.plugins import get_host

    host = get_host()
    eager = Tower().train()
    model, report = compile_api.compile_model(eager, "activation-checkpointing", batch_sizes=(1, 8), host=host)
    assert report.status == "compiled", report.reason
    assert "train" in report.modes and report.notes["checkpointed_blocks"] == 3
    assert all(is_checkpointed(b) for b in model.blocks)
    _, plain = compile_api.compile_model(Plain(), "activation-checkpointing", batch_sizes=(1,), host=host)
    assert plain.status == "fallback" and "declares no repeated blocks" in plain.reason
    if "bf16" not in {r.spec.name for r in host.strategies.match(None)}:
        pytest.skip("the bf16 strategy is not installed; composition checked with eager only")
    # bf16 itself misses the gradient tolerance on BatchNorm at batch 1 (Tower falls back
    # with bf16 alone too), so the composition is checked on the LayerNorm model: it must
    # validate, and its gradients must be bf16's own -- checkpointing adds no error.
    torch.manual_seed(0)
    tied = TiedSteps().train()
    composed, report = compile_api.compile_model(tied, "activation-checkpointing+bf16", batch_sizes=(1, 8), host=host)
    assert report.status == "compiled", report.reason
    assert list(composed.state_dict()) == list(tied.state_dict())
    bf16_only, bf16_report = compile_api.compile_model(tied, "bf16", batch_sizes=(1,), host=host)
    assert bf16_report.status == "compiled", bf16_report.reason
    obs = make_observations(5, seed=4)
    for model in (composed, bf16_only):
        model.train()
        _loss(model, obs).backward()
    _assert_same_grads_and_buffers(bf16_only, composed)


@pytest.mark.slow
def test_under_torch_compile_gradients_and_statistics_equal_eager() -> None:
    torch.manual_seed(0)
    eager = Tower().train()
    checkpointed = apply_activation_checkpointing(copy.deepcopy(eager), StrategyContext(training=True))
    compiled = torch.compile(checkpointed, backend="aot_eager")
    obs = make_observations(6)
    _loss(eager, obs).backward()
    _loss(compiled, obs).backward()
    _assert_same_grads_and_buffers(eager, checkpointed)
