"""A local keisei plugin for the tests: a tiny actor-critic that misbehaves on one rank.

``ddp-faulty`` options: ``fail_rank`` (which rank misbehaves), ``mode`` (``none``,
``raise``, ``hang``, ``exit``, ``build``) and ``after_calls`` (forward calls before it
does). It misbehaves only inside an initialised torch.distributed process group, so the
engine's own eager build in the bench process is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from keisei_core.hookspecs import hookimpl
from keisei_core.specs import ModelSpec


def _rank() -> int | None:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else None


@attrs.frozen
class FaultyOptions:
    input_channels: int = 46
    board_size: int = 9
    num_actions: int = 64
    hidden: int = 8
    fail_rank: int = 1
    mode: str = attrs.field(default="none", validator=attrs.validators.in_(("none", "raise", "hang", "exit", "build")))
    after_calls: int = 2


def build(options: FaultyOptions) -> Any:
    import os
    import time

    import torch
    from torch import nn

    from keisei_core.actor_critic import ActorCriticMixin

    if options.mode == "build" and _rank() == options.fail_rank:
        raise ValueError(f"ddp-faulty refuses to build on rank {options.fail_rank}")

    class Faulty(ActorCriticMixin, nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(options.input_channels * options.board_size**2, options.hidden)
            self.policy = nn.Linear(options.hidden, options.num_actions)
            self.value = nn.Linear(options.hidden, 1)
            self.calls = 0

        def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.calls += 1
            if _rank() == options.fail_rank and self.calls > options.after_calls:
                if options.mode == "raise":
                    raise RuntimeError(f"injected failure on rank {options.fail_rank}")
                if options.mode == "hang":
                    time.sleep(3600)
                if options.mode == "exit":
                    os._exit(7)
            h = torch.relu(self.body(obs.flatten(1)))
            return self.policy(h), self.value(h).squeeze(-1)

    return Faulty()


@hookimpl
def keisei_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(ModelSpec(name="ddp-faulty", build=build, options=FaultyOptions,
                       description="tiny net that raises, hangs or exits on one DDP rank (tests)"))
