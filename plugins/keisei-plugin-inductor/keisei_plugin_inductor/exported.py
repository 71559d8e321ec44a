"""What the exporting strategies (``aot-inductor``, ``int8``, ``int8-aot``) share: the
export of a module with a dynamic batch, the checks their wrapped ``forward`` makes
before it runs the compiled program, and the hook that marks the program stale when new
weights are loaded.

Each strategy keeps its compiled program on a holder object (the ``package=`` or
``program=`` keyword of its ``functools.partial`` forward wrapper) with two flags:
``exporting`` (torch.export is tracing the eager forward underneath: the wrapper must
step aside) and ``stale`` (the weights changed: build or look up the program again).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import torch
from torch import nn

from keisei_core.plugin import InputError, forward_wrappers


class ProgramHolder(Protocol):
    exporting: bool
    stale: bool


class Observing(nn.Module):
    """A one-argument view of the model for torch.export: a wrapped ``forward`` takes
    ``*args``, which torch.export cannot match a named dynamic batch dimension against."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, obs: torch.Tensor) -> Any:
        return self.model(obs)


def export_dynamic(module: nn.Module, example: torch.Tensor, holder: ProgramHolder) -> Any:
    """``torch.export`` the eval-mode ``module`` (with its forward wrappers) on ``example``,
    the batch dimension declared dynamic; ``holder.exporting`` is set meanwhile so the
    strategy's own wrapper runs the eager forward instead of the program being built."""
    was_training = module.training
    module.eval()
    holder.exporting = True
    try:
        with torch.no_grad():
            return torch.export.export(
                Observing(module), (example,), dynamic_shapes={"obs": {0: torch.export.Dim.DYNAMIC}}
            )
    finally:
        holder.exporting = False
        module.train(was_training)


def steps_aside(strategy: str, module: nn.Module, holder: ProgramHolder, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the wrapped forward must run the eager forward (torch.export is tracing it);
    otherwise checks that the call is one the inference-only program can answer."""
    if holder.exporting:
        return True
    if module.training:
        raise InputError(f"an {strategy} model runs inference only (eval mode); call model.eval()")
    if args or kwargs:
        raise InputError(f"an {strategy} model takes the observations only")
    return False


def _mark_stale(module: nn.Module, _incompatible_keys: Any, *, keyword: str, kind: type) -> None:
    for wrapper in forward_wrappers(module):
        if isinstance(wrapper, functools.partial) and isinstance(wrapper.keywords.get(keyword), kind):
            wrapper.keywords[keyword].stale = True


def mark_stale_on_load(module: nn.Module, keyword: str, kind: type) -> None:
    """After ``load_state_dict`` the holder of type ``kind`` under the wrapper keyword
    ``keyword`` is stale: its next call builds (or finds) the program for the new weights.
    A partial of a module-level function, so the model still deep-copies and pickles."""
    module.register_load_state_dict_post_hook(functools.partial(_mark_stale, keyword=keyword, kind=kind))
