"""Experts with ghosts: a square-token transformer whose feed-forward layers are
mixtures of experts, with ghost experts that take load only when regular experts saturate.

Routing is top-1 with a fixed capacity per expert (Switch-Transformer style), computed
with tensor operations only: no ``.item()``, no data-dependent shapes, so a forward
never waits on the device and the layer traces under ``torch.compile``. Tokens are
scattered into fixed-size expert buffers, every expert bank runs as one batched matrix
product, and the results are gathered back, weighted by the router's probability.

Router statistics (load per expert, ghost activations, dropped tokens) are kept from the
last forward as one small detached tensor per layer; :meth:`ExpertsWithGhosts.metrics`
reads them all with a single host transfer. Nothing that holds the autograd graph is
ever stored on the module, so statistics cannot keep a step's graph alive into the next.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from keisei_core.plugin import ActorCriticMixin
from keisei_plugin_research.layers import (
    SquarePolicyHead,
    SquareTokens,
    TransformerBlock,
    ValueHead,
)
from keisei_plugin_research.masks import RoutingPlan, ShapeCache, local_attention_mask, routing_plan
from keisei_plugin_research.options import ExpertsWithGhostsOptions


class Routing(NamedTuple):
    """Where each token goes: a slot in the regular and the ghost buffers (the last slot
    of each buffer is a discard slot) and the weight its expert output gets (0 if none)."""

    regular_slot: torch.Tensor
    regular_gate: torch.Tensor
    ghost_slot: torch.Tensor
    ghost_gate: torch.Tensor
    stats: torch.Tensor


def stat_names(experts: int, ghosts: int) -> list[str]:
    """Names of the entries of ``Routing.stats``, in order."""
    return [
        *(f"load/expert{i}" for i in range(experts)),
        *(f"load/ghost{i}" for i in range(ghosts)),
        "ghost_fraction",
        "dropped_fraction",
        "saturated_experts",
        "balance",
    ]


def _positions(claims: torch.Tensor, plan: RoutingPlan) -> torch.Tensor:
    """Rank of each token among the tokens claiming the same expert, in priority order.
    ``claims`` is one-hot ``(tokens, experts)`` (all-zero rows claim nothing)."""
    ranked = claims[plan.order]
    position = ((ranked.cumsum(dim=0) - 1) * ranked).sum(dim=-1)
    return position[plan.inverse]


def route(logits: torch.Tensor, experts: int, ghosts: int, plan: RoutingPlan) -> Routing:
    """Top-1 routing over ``experts`` regular experts; what exceeds a regular expert's
    capacity goes to the best ghost (by the ghost logits) while the ghosts have room.

    ``logits`` is float32 ``(tokens, experts + ghosts)``. Loads in ``stats`` are the
    router's demand in units of the fair share ``tokens / experts``, so a load above the
    saturation threshold is exactly when ghosts engage.
    """
    tokens = logits.shape[0]
    fair_share = tokens / experts
    regular_probs = logits[:, :experts].softmax(dim=-1)
    regular_gate, expert = regular_probs.max(dim=-1)
    claims = F.one_hot(expert, experts)
    position = _positions(claims, plan)
    kept = position < plan.regular_capacity
    regular_slot = torch.where(kept, expert * plan.regular_capacity + position, experts * plan.regular_capacity)
    overflow = ~kept
    demand = claims.sum(dim=0).float()
    if ghosts:
        ghost_gate, ghost = logits[:, experts:].softmax(dim=-1).max(dim=-1)
        ghost_claims = F.one_hot(ghost, ghosts) * overflow.unsqueeze(-1)
        ghost_position = _positions(ghost_claims, plan)
        taken = overflow & (ghost_position < plan.ghost_capacity)
        ghost_slot = torch.where(taken, ghost * plan.ghost_capacity + ghost_position, ghosts * plan.ghost_capacity)
        ghost_load = (ghost_claims * taken.unsqueeze(-1)).sum(dim=0).float() / fair_share
    else:
        ghost_gate = regular_gate.new_zeros(tokens)
        taken = torch.zeros_like(kept)
        ghost_slot = torch.zeros_like(expert)
        ghost_load = demand.new_zeros(0)
    with torch.no_grad():
        # Switch Transformer's balance term: 1.0 when routing is uniform, up to `experts`.
        balance = experts * (demand / tokens * regular_probs.mean(dim=0)).sum()
        stats = torch.cat(
            [
                demand / fair_share,
                ghost_load,
                torch.stack(
                    [
                        taken.float().mean(),
                        (overflow & ~taken).float().mean(),
                        (demand > plan.regular_capacity).float().mean(),
                        balance,
                    ]
                ),
            ]
        ).detach()
    return Routing(
        regular_slot=regular_slot,
        regular_gate=torch.where(kept, regular_gate, torch.zeros_like(regular_gate)),
        ghost_slot=ghost_slot,
        ghost_gate=torch.where(taken, ghost_gate, torch.zeros_like(ghost_gate)),
        stats=stats,
    )


class ExpertBank(nn.Module):
    """``count`` two-layer GELU MLPs with stacked weights, run as batched matmuls."""

    def __init__(self, count: int, width: int, hidden: int) -> None:
        super().__init__()
        self.count = count
        bound_in, bound_hidden = 1.0 / math.sqrt(width), 1.0 / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(count, width, hidden).uniform_(-bound_in, bound_in))
        self.b1 = nn.Parameter(torch.empty(count, 1, hidden).uniform_(-bound_in, bound_in))
        self.w2 = nn.Parameter(torch.empty(count, hidden, width).uniform_(-bound_hidden, bound_hidden))
        self.b2 = nn.Parameter(torch.empty(count, 1, width).uniform_(-bound_hidden, bound_hidden))

    def run(self, tokens: torch.Tensor, slot: torch.Tensor, capacity: int, gate: torch.Tensor) -> torch.Tensor:
        """Scatter ``tokens (N, width)`` into ``capacity`` slots per expert, run the
        experts, gather each token's output and weight it by ``gate``."""
        width = tokens.shape[-1]
        buffer = tokens.new_zeros(self.count * capacity + 1, width).index_copy(0, slot, tokens)
        hidden = F.gelu(torch.baddbmm(self.b1, buffer[:-1].view(self.count, capacity, width), self.w1))
        out = torch.baddbmm(self.b2, hidden, self.w2).reshape(self.count * capacity, width)
        out = torch.cat([out, out.new_zeros(1, width)])  # the discard slot reads zeros
        return out[slot] * gate.unsqueeze(-1).to(out.dtype)


class MixtureWithGhosts(nn.Module):
    """A mixture-of-experts feed-forward layer with ghost experts (see :func:`route`)."""

    def __init__(self, options: ExpertsWithGhostsOptions, plans: ShapeCache[RoutingPlan]) -> None:
        super().__init__()
        self.num_experts, self.num_ghosts = options.experts, options.ghosts
        self.router = nn.Linear(options.width, options.experts + options.ghosts)
        self.experts = ExpertBank(options.experts, options.width, options.expert_hidden)
        self.ghosts = ExpertBank(options.ghosts, options.width, options.expert_hidden) if options.ghosts else None
        self.plans = plans
        self.last_stats: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        flat = x.reshape(batch * tokens, width)
        # Routing decisions in float32 whatever the compute dtype, so bf16 runs route alike.
        logits = F.linear(flat.float(), self.router.weight.float(), self.router.bias.float())
        plan = self.plans.get(batch * tokens, x.device)
        routing = route(logits, self.num_experts, self.num_ghosts, plan)
        out = self.experts.run(flat, routing.regular_slot, plan.regular_capacity, routing.regular_gate)
        if self.ghosts is not None:
            out = out + self.ghosts.run(flat, routing.ghost_slot, plan.ghost_capacity, routing.ghost_gate)
        self.last_stats = routing.stats
        return out.view(batch, tokens, width)


class ExpertsWithGhosts(ActorCriticMixin, nn.Module):
    keisei_repeated_blocks = ("blocks",)

    def __init__(self, options: ExpertsWithGhostsOptions) -> None:
        super().__init__()
        board = options.board_size
        squares = board * board
        self.observation_shape = (options.input_channels, board, board)
        self.num_actions = options.num_actions
        self.board_size = board
        self.attention_radius = options.attention_radius
        self.stat_names = stat_names(options.experts, options.ghosts)
        # partials of module-level builders (not lambdas) keep the model picklable.
        self.attention_masks: ShapeCache[torch.Tensor] = ShapeCache(
            functools.partial(local_attention_mask, board, options.attention_radius or 0)
        )
        self.routing_plans: ShapeCache[RoutingPlan] = ShapeCache(
            functools.partial(
                routing_plan,
                experts=options.experts,
                saturation=options.saturation,
                ghost_capacity=options.ghost_capacity,
            )
        )
        self.tokens = SquareTokens(options.input_channels, board, options.width)
        self.blocks = nn.ModuleList(
            TransformerBlock(options.width, options.heads, MixtureWithGhosts(options, self.routing_plans))
            for _ in range(options.depth)
        )
        self.norm = nn.LayerNorm(options.width)
        self.policy_head = SquarePolicyHead(options.width, squares, options.policy_planes, options.num_actions)
        self.value_head = ValueHead(options.width, options.value_hidden)

    def moe_layers(self) -> list[MixtureWithGhosts]:
        return [m for m in self.modules() if isinstance(m, MixtureWithGhosts)]

    def attention_mask(self, device: torch.device) -> torch.Tensor | None:
        """The (cached) mask for ``attention_radius``; None means full attention."""
        if self.attention_radius is None:
            return None
        return self.attention_masks.get(device)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tokens(obs)
        mask = self.attention_mask(x.device)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        return self.policy_head(x[:, :-1]), self.value_head(x[:, -1])

    def metrics(self) -> dict[str, float]:
        """Router statistics of the last forward, per layer and summarised (empty before
        the first forward). One host transfer for all layers; call it every K steps."""
        layers = [layer.last_stats for layer in self.moe_layers()]
        if any(stats is None for stats in layers):
            return {}
        values = torch.stack(layers).float().cpu().tolist()  # type: ignore[arg-type]
        out: dict[str, float] = {}
        for index, row in enumerate(values):
            out.update({f"moe/layer{index}/{name}": float(v) for name, v in zip(self.stat_names, row, strict=True)})
        for name in ("ghost_fraction", "dropped_fraction", "saturated_experts", "balance"):
            column = self.stat_names.index(name)
            out[f"moe/{name}"] = sum(row[column] for row in values) / len(values)
        loads = [v for row in values for name, v in zip(self.stat_names, row, strict=True) if name.startswith("load/expert")]
        out["moe/max_load"] = max(loads)
        return out
