"""Activation checkpointing over the repeated blocks a model declares.

A model names the attributes holding its repeated blocks in ``keisei_repeated_blocks``
(ResTower: ``("res_blocks",)``). Each child of such a container (or the module itself,
for a weight-tied block applied several times) gets an instance-level ``forward`` that
runs the class's forward under ``torch.utils.checkpoint`` (non-reentrant): activations
inside the block are dropped after the forward and recomputed during backward.

Why an instance attribute rather than a wrapper module: a wrapper would add a key prefix
(``res_blocks.0.inner.conv1.weight``), and checkpoints of checkpointed and plain runs must
load into each other (Keisei defect 3 was exactly such a prefix). ``nn.Module.__call__``
looks ``forward`` up on the instance first, so hooks, ``Sequential`` and ``torch.compile``
all see the checkpointed forward while ``state_dict`` is untouched.

Batch normalisation: recomputing a block in train mode would run its BatchNorm layers a
second time and update their running statistics twice per step (an effective momentum of
0.19 instead of 0.1). During recomputation the block's BatchNorm layers therefore run with
momentum 0 (their running statistics stay as they are) and their batch counter is
restored; they still normalise with the batch statistics, so the recomputed activations
equal the first ones. Under ``torch.compile`` the recomputation is part of the
backward graph, which does not repeat buffer updates, so no context is needed there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from keisei_core.plugin import KeiseiError, StrategyContext

REPEATED_BLOCKS_ATTRIBUTE = "keisei_repeated_blocks"


class NoRepeatedBlocksError(KeiseiError):
    """The model declares no repeated blocks, so there is nothing to checkpoint."""


@contextlib.contextmanager
def _frozen_running_stats(norms: list[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    """Momentum 0 for the recomputation: the running statistics are updated as
    ``(1 - 0) * running + 0 * batch``, i.e. left as they are, while the op and what it
    saves for backward stay those of the first forward (checkpoint checks that); the
    batch counter, which the module bumps in Python, is put back afterwards."""
    changed = [m for m in norms if m.training and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in changed]
    for module in changed:
        module.momentum = 0.0
    try:
        yield
    finally:
        for module, (momentum, count) in zip(changed, saved, strict=True):
            module.momentum = momentum
            if count is not None and module.num_batches_tracked is not None:
                module.num_batches_tracked.copy_(count)


class CheckpointedForward:
    """The ``forward`` installed on a block: the block's own forward under checkpoint.

    It refers to its module (not to a bound method), so ``copy.deepcopy`` of the model
    rebinds it to the copied block through deepcopy's memo.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        # A forward already installed on the instance (by another transform) is kept.
        self.inner = module.__dict__.get("forward")

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.inner is not None:
            return self.inner(*args, **kwargs)
        return type(self.module).forward(self.module, *args, **kwargs)

    def _contexts(self) -> tuple[contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]]:
        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return contextlib.nullcontext(), _frozen_running_stats(norms)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self._forward(*args, **kwargs)  # nothing is saved for backward anyway
        if torch.compiler.is_compiling() or not self._has_batch_norm():
            return checkpoint(self._forward, *args, use_reentrant=False, **kwargs)
        return checkpoint(self._forward, *args, use_reentrant=False, context_fn=self._contexts, **kwargs)

    def _has_batch_norm(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.module.modules())


def declaring_module(model: nn.Module) -> nn.Module | None:
    """The model itself, or the first submodule (e.g. inside a strategy's wrapper) that
    declares ``keisei_repeated_blocks``."""
    for module in model.modules():
        if getattr(module, REPEATED_BLOCKS_ATTRIBUTE, None):
            return module
    return None


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules to checkpoint: every child of each declared container, or the declared
    module itself when it is not a container (a weight-tied block applied repeatedly)."""
    owner = declaring_module(model)
    name = getattr(model, "keisei_model_name", None) or type(model).__name__
    if owner is None:
        raise NoRepeatedBlocksError(
            f"model '{name}' declares no repeated blocks (set keisei_repeated_blocks to the names "
            "of the ModuleList/Sequential attributes holding them); activation checkpointing has "
            "nothing to wrap"
        )
    blocks: list[nn.Module] = []
    for attribute in getattr(owner, REPEATED_BLOCKS_ATTRIBUTE):
        target = getattr(owner, attribute, None)
        if not isinstance(target, nn.Module):
            raise NoRepeatedBlocksError(
                f"model '{name}' names '{attribute}' in keisei_repeated_blocks, but "
                f"{type(owner).__name__}.{attribute} is not a submodule"
            )
        if isinstance(target, nn.ModuleList | nn.Sequential | nn.ModuleDict):
            blocks.extend(target.children())
        else:
            blocks.append(target)
    if not blocks:
        raise NoRepeatedBlocksError(f"model '{name}': its repeated-block containers are empty")
    return blocks


def is_checkpointed(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("forward"), CheckpointedForward)


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Checkpoint every repeated block of ``model`` in place; returns how many blocks are
    checkpointed. Applying it twice changes nothing."""
    blocks = repeated_blocks(model)
    for block in blocks:
        if not is_checkpointed(block):
            block.forward = CheckpointedForward(block)  # type: ignore[method-assign]
    return len(blocks)


def disable_activation_checkpointing(model: nn.Module) -> int:
    """Undo :func:`enable_activation_checkpointing`; returns how many blocks were restored."""
    restored = 0
    for module in model.modules():
        installed = module.__dict__.get("forward")
        if isinstance(installed, CheckpointedForward):
            if installed.inner is not None:
                module.forward = installed.inner  # type: ignore[method-assign]
            else:
                del module.forward
            restored += 1
    return restored


def apply_activation_checkpointing(model: nn.Module, context: StrategyContext) -> nn.Module:
    """The ``activation-checkpointing`` strategy: checkpoint the declared repeated blocks."""
    count = enable_activation_checkpointing(model)
    context.record("checkpointed_blocks", count)
    if not context.training:
        context.record("activation_checkpointing", "no effect without gradients (inference cell)")
    return model
