"""The fused SE modules and the swap that puts them into any model.

:class:`FusedSEUnit` takes over the ``fc1``/``fc2`` convolutions of a
:class:`keisei_core.nn.SEUnit` (the same Parameter objects, so the model's state_dict
keys and values do not change) and computes the whole unit with one
``keisei_fused_se::se_unit`` call. :class:`FusedSEFunction` replaces a parameter-free
:class:`keisei_core.nn.SEFunction` (blocks that own their SE weights, as Keisei 2026's
``se_fc1``/``se_fc2`` ``Linear`` layers): it has no parameters either, so nothing moves.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from keisei_core.plugin import SEFunction, SEUnit, SqueezeExcitation, SqueezeExcitationFiLM
from keisei_plugin_fused_se.ops import se_unit

# Units whose forward is exactly the math of the fused op. A subclass that overrides
# forward or excitation computes something else and is left alone.
_KNOWN_FORWARDS = {SqueezeExcitation.forward, SqueezeExcitationFiLM.forward}


def _is_pointwise_conv(conv: nn.Module, in_channels: int, out_channels: int) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.in_channels == in_channels
        and conv.out_channels == out_channels
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def unfusable_reason(unit: nn.Module) -> str | None:
    """Why ``unit`` cannot be swapped for a fused module (None when it can)."""
    if isinstance(unit, SEFunction):
        if type(unit).forward is not SEFunction.forward:
            return f"{type(unit).__name__} overrides the SE math"
        return None
    if not isinstance(unit, SEUnit):
        return f"{type(unit).__name__} is not an SEUnit"
    if type(unit).forward not in _KNOWN_FORWARDS or type(unit).excitation is not SEUnit.excitation:
        return f"{type(unit).__name__} overrides the SE math"
    excite = 2 * unit.channels if unit.film else unit.channels
    if not _is_pointwise_conv(unit.fc1, unit.channels, unit.hidden):
        return "fc1 is not a 1x1 convolution C -> hidden"
    if not _is_pointwise_conv(unit.fc2, unit.hidden, excite):
        return "fc2 is not a 1x1 convolution hidden -> C (2C for FiLM)"
    return None


class FusedSEUnit(SEUnit):
    """An SE unit (plain or FiLM) computed by the fused operator.

    Built from an existing unit with :meth:`from_unit`; owns that unit's ``fc1`` and
    ``fc2`` modules, so parameters, state_dict keys and optimizer state carry over.
    """

    def __init__(self, fc1: nn.Conv2d, fc2: nn.Conv2d, channels: int, hidden: int, film: bool) -> None:
        # SEUnit.__init__ would create fresh convolutions; the fused unit adopts existing ones.
        nn.Module.__init__(self)
        self.channels = channels
        self.hidden = hidden
        self.film = film
        self.fc1 = fc1
        self.fc2 = fc2

    @classmethod
    def from_unit(cls, unit: SEUnit) -> FusedSEUnit:
        reason = unfusable_reason(unit)
        if reason is not None:
            raise ValueError(f"cannot fuse {type(unit).__name__}: {reason}")
        fused = cls(unit.fc1, unit.fc2, unit.channels, unit.hidden, bool(unit.film))
        fused.train(unit.training)
        return fused

    def excitation(self, y: Tensor) -> Tensor:
        # Kept for tools that call it; the fused forward does not.
        return super().excitation(y)

    def forward(self, y: Tensor, residual: Tensor) -> Tensor:
        fc1, fc2 = self.fc1, self.fc2
        return fused_se_call(y, residual, fc1.weight.flatten(1), fc1.bias, fc2.weight.flatten(1), fc2.bias, self.film)


class FusedSEFunction(SEFunction):
    """A :class:`keisei_core.nn.SEFunction` (weights passed per call) computed by the fused operator."""

    def forward(
        self, y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None
    ) -> Tensor:
        return fused_se_call(y, residual, w1, b1, w2, b2, self.film)


def fused_se_call(
    y: Tensor, residual: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None, film: bool
) -> Tensor:
    """One fused SE unit: ``w1`` ``(hidden, C)``, ``w2`` ``(C or 2C, hidden)``; a missing bias is zero."""
    b1 = b1 if b1 is not None else torch.zeros_like(w1[:, 0])
    b2 = b2 if b2 is not None else torch.zeros_like(w2[:, 0])
    if y.device.type == "cpu" and (
        not torch.compiler.is_compiling() or not _records_autograd(y, residual, w1, b1, w2, b2)
    ):
        # On CPU, call the C++ kernel's op directly: its autograd formula is C++ too.
        # The public op's Python dispatch costs about 20 us per call and its Python
        # autograd formula about 200 us per training step, more than the kernels at
        # batch 1. Graphs that are traced for training (torch.compile, torch.export)
        # get the public op, whose autograd formula they can trace.
        return torch.ops.keisei_fused_se.se_unit_cpu(y, residual, w1, b1, w2, b2, film)
    return se_unit(y, residual, w1, b1, w2, b2, film)


def _records_autograd(*tensors: Tensor) -> bool:
    """Whether a call on ``tensors`` would be recorded for backward."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def fuse_se_units(model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """Swap every fusable SE unit in ``model`` (in place) for its fused module
    (:class:`FusedSEUnit` for an SEUnit, :class:`FusedSEFunction` for an SEFunction).

    Returns the qualified names of the swapped units and, for SE units left as they
    were, the reason. A unit shared by several parents is swapped for one fused unit
    everywhere, so sharing (and the state_dict) is preserved.
    """
    swapped: dict[int, nn.Module] = {}
    fused_names: list[str] = []
    skipped: dict[str, str] = {}
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(parent._modules.items()):
            if child is None or not isinstance(child, (SEUnit, SEFunction)):
                continue
            if isinstance(child, (FusedSEUnit, FusedSEFunction)):
                continue
            qualified = f"{parent_name}.{child_name}" if parent_name else child_name
            reason = unfusable_reason(child)
            if reason is not None:
                skipped[qualified] = reason
                continue
            if id(child) not in swapped:
                swapped[id(child)] = _fused_replacement(child)
                fused_names.append(qualified)
            setattr(parent, child_name, swapped[id(child)])
    return fused_names, skipped


def _fused_replacement(unit: nn.Module) -> nn.Module:
    if isinstance(unit, SEFunction):
        fused = FusedSEFunction(film=bool(unit.film))
        fused.train(unit.training)
        return fused
    assert isinstance(unit, SEUnit)
    return FusedSEUnit.from_unit(unit)
