"""Experts with ghosts: routing and capacity, ghost engagement past the saturation
threshold only, router metrics, and masks built once per shape."""

from __future__ import annotations

import copy

import pytest
import torch
from keisei_plugin_research.experts import route, stat_names
from keisei_plugin_research.masks import ShapeCache, local_attention_mask, routing_plan

from keisei_core.api import build_model
from keisei_core.observations import make_observations


def _logits(choices: list[int], experts: int, ghosts: int, ghost_choices: list[int] | None = None) -> torch.Tensor:
    logits = torch.zeros(len(choices), experts + ghosts)
    logits[torch.arange(len(choices)), torch.tensor(choices)] = 5.0
    if ghost_choices is not None:
        logits[torch.arange(len(choices)), experts + torch.tensor(ghost_choices)] = 5.0
    return logits


def _stats(routing_stats: torch.Tensor, experts: int, ghosts: int) -> dict[str, float]:
    return dict(zip(stat_names(experts, ghosts), routing_stats.tolist(), strict=True))


def test_balanced_load_never_engages_ghosts() -> None:
    # 8 tokens, 4 experts: each gets exactly its fair share of 2 (threshold 1.0).
    plan = routing_plan(8, torch.device("cpu"), experts=4, saturation=1.0, ghost_capacity=1.0)
    routing = route(_logits([0, 1, 2, 3, 3, 2, 1, 0], 4, 2), 4, 2, plan)
    stats = _stats(routing.stats, 4, 2)
    assert stats["ghost_fraction"] == 0.0 and stats["dropped_fraction"] == 0.0
    assert bool((routing.ghost_gate == 0).all()) and bool((routing.regular_gate > 0).all())
    assert [stats[f"load/expert{i}"] for i in range(4)] == [1.0, 1.0, 1.0, 1.0]
    # Every kept token has its own slot.
    assert len(set(routing.regular_slot.tolist())) == 8


def test_saturated_expert_overflows_to_ghosts_then_drops() -> None:
    # All 8 tokens want expert 0; capacity 2 -> 6 overflow; 2 ghosts x capacity 2 take 4.
    plan = routing_plan(8, torch.device("cpu"), experts=4, saturation=1.0, ghost_capacity=1.0)
    routing = route(_logits([0] * 8, 4, 2, ghost_choices=[0, 1] * 4), 4, 2, plan)
    stats = _stats(routing.stats, 4, 2)
    assert int((routing.regular_gate > 0).sum()) == 2
    assert int((routing.ghost_gate > 0).sum()) == 4
    assert stats["ghost_fraction"] == pytest.approx(4 / 8)
    assert stats["dropped_fraction"] == pytest.approx(2 / 8)
    assert stats["load/expert0"] == pytest.approx(4.0) and stats["saturated_experts"] == pytest.approx(0.25)
    assert stats["load/ghost0"] == pytest.approx(1.0) and stats["load/ghost1"] == pytest.approx(1.0)
    # No token is served twice, and dropped tokens get no output at all.
    served = (routing.regular_gate > 0) | (routing.ghost_gate > 0)
    assert not bool(((routing.regular_gate > 0) & (routing.ghost_gate > 0)).any())
    assert int(served.sum()) == 6


def test_overflow_is_spread_not_always_the_last_tokens() -> None:
    plan = routing_plan(82 * 4, torch.device("cpu"), experts=4, saturation=1.0, ghost_capacity=1.0)
    routing = route(_logits([0] * (82 * 4), 4, 2), 4, 2, plan)
    kept = (routing.regular_gate > 0).view(4, 82)
    assert bool(kept.any(dim=1).all()), "every sample keeps some tokens on the regular expert"
    assert sorted(plan.order.tolist()) == list(range(82 * 4))


def _forced_router_model(saturation: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("experts-with-ghosts-tiny", saturation=saturation, ghost_capacity=4.0)
    with torch.no_grad():
        for layer in model.moe_layers():
            layer.router.weight.zero_()
            layer.router.bias.zero_()
            layer.router.bias[0] = 10.0  # every token wants regular expert 0
    return model


def _ghost_grad_sum(model: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for layer in model.moe_layers() for p in layer.ghosts.parameters())


def test_ghosts_engage_only_past_the_saturation_threshold() -> None:
    obs = make_observations(4, seed=2)
    # saturation = experts: expert 0 may hold every token -> never saturated.
    calm = _forced_router_model(saturation=4.0)
    logits, value = calm(obs)
    (logits.logsumexp(-1).mean() + value.square().mean()).backward()
    metrics = calm.metrics()
    assert metrics["moe/ghost_fraction"] == 0.0 and metrics["moe/dropped_fraction"] == 0.0
    assert metrics["moe/max_load"] == pytest.approx(4.0)
    assert _ghost_grad_sum(calm) == 0.0
    # saturation 1.0: expert 0 keeps a quarter of the tokens, the rest go to ghosts.
    busy = _forced_router_model(saturation=1.0)
    logits, value = busy(obs)
    (logits.logsumexp(-1).mean() + value.square().mean()).backward()
    metrics = busy.metrics()
    assert metrics["moe/ghost_fraction"] == pytest.approx(0.75)
    assert metrics["moe/saturated_experts"] == pytest.approx(0.25)
    assert _ghost_grad_sum(busy) > 0.0


def test_metrics_are_detached_and_empty_before_a_forward() -> None:
    model = build_model("experts-with-ghosts-tiny")
    assert model.metrics() == {}
    model(make_observations(2))
    for layer in model.moe_layers():
        assert layer.last_stats is not None and not layer.last_stats.requires_grad
    metrics = model.metrics()
    assert {"moe/ghost_fraction", "moe/max_load", "moe/balance", "moe/layer1/load/ghost1"} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values())


def test_masks_are_built_once_per_shape_and_reused() -> None:
    model = build_model("experts-with-ghosts-tiny")  # attention_radius = 2
    device = torch.device("cpu")
    first = model.attention_mask(device)
    assert first is model.attention_mask(device)
    plan = model.routing_plans.get(3 * 82, device)
    assert plan is model.routing_plans.get(3 * 82, device)
    obs = make_observations(3)
    builds = (model.attention_masks.builds, model.routing_plans.builds)
    model(obs)
    model(obs)
    assert (model.attention_masks.builds, model.routing_plans.builds) == builds
    assert model.routing_plans.get(5 * 82, device) is not plan
    # The copy a strategy works on shares nothing mutable with the original's cache.
    clone = copy.deepcopy(model)
    assert clone.routing_plans is not model.routing_plans


def test_shape_cache_is_bounded() -> None:
    cache: ShapeCache[int] = ShapeCache(lambda n: n * 2, max_entries=3)
    for n in range(10):
        assert cache.get(n) == 2 * n
    assert len(cache) == 3 and cache.builds == 10


def test_local_attention_mask() -> None:
    mask = local_attention_mask(9, 1, torch.device("cpu"))
    assert mask.shape == (82, 82)
    assert bool(mask[0, 0]) and bool(mask[0, 10]) and not bool(mask[0, 2])
    assert bool(mask[81].all()) and not bool(mask[:81, 81].any())
    # Full radius: every square sees every square.
    assert bool(local_attention_mask(9, 8, torch.device("cpu"))[:81, :81].all())


def test_full_attention_uses_no_mask() -> None:
    model = build_model("experts-with-ghosts-tiny", attention_radius=None)
    assert model.attention_mask(torch.device("cpu")) is None
