"""Multi-head actor-critic outputs: W/D/L value logits, score lead, spatial policies.

Every keisei model's ``forward(obs)`` returns a tuple of tensors whose first two entries
are the PPO pair ``(policy_logits (B, A), value (B,))``. A multi-head model returns more
entries after those two and names them in ``keisei_output_heads`` (an :class:`OutputHeads`);
a scalar-value model returns exactly the pair and declares nothing (its forward signature
is unchanged). The heads keisei knows:

- ``value_wdl``: ``(B, 3)`` win/draw/loss logits (pre-softmax, order W, D, L);
- ``score``: ``(B,)`` predicted score lead.

Why a tuple and not an attrs object from ``forward``: a tuple of tensors is what every
compiler keisei drives accepts as a graph output (dynamo/Inductor, AOTInductor packages,
ONNX export, operator-level transforms), and code that reads only ``out[0], out[1]`` keeps
working. :func:`read_outputs` turns the tuple into the typed :class:`ActorCriticOutput`.

**The scalar value of a W/D/L model is** ``P(W) - P(L) = softmax(value_wdl)[0] -
softmax(value_wdl)[2]``, as Keisei 2026 computes it for rollouts and GAE
(``KataGoPPOAlgorithm.scalar_value``): an expected result in [-1, 1] with a draw worth 0.
The network computes it inside ``forward`` (:func:`scalar_value_from_wdl`), so a compiled
model computes it too and PPO code that uses ``value`` needs no change. The score head is
not blended in (Keisei's default ``score_blend_alpha = 0``).

Importing this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keisei_core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from keisei_core.spaces import ActionSpace

HEAD_VALUE_WDL = "value_wdl"
HEAD_SCORE = "score"
KNOWN_HEADS = (HEAD_VALUE_WDL, HEAD_SCORE)
VALUE_SCALAR = "scalar"
VALUE_WDL = "wdl"


def _head_names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _known_heads(_instance: Any, _attribute: Any, value: tuple[str, ...]) -> None:
    unknown = [h for h in value if h not in KNOWN_HEADS]
    if unknown or len(set(value)) != len(value):
        raise ValueError(f"extra heads must be distinct names from {list(KNOWN_HEADS)}, got {list(value)}")


@attrs.frozen
class OutputHeads:
    """What a model's ``forward`` returns after ``(policy_logits, value)``, in order."""

    extra: tuple[str, ...] = attrs.field(default=(), converter=_head_names, validator=_known_heads)

    @property
    def value_kind(self) -> str:
        """``wdl`` when the scalar value is derived from W/D/L logits, else ``scalar``."""
        return VALUE_WDL if HEAD_VALUE_WDL in self.extra else VALUE_SCALAR

    @property
    def names(self) -> tuple[str, ...]:
        return ("policy", "value", *self.extra)


SCALAR_HEADS = OutputHeads()
WDL_SCORE_HEADS = OutputHeads((HEAD_VALUE_WDL, HEAD_SCORE))


def output_heads(model: nn.Module | Any) -> OutputHeads:
    """The heads ``model`` declares (through a torch.compile wrapper too); scalar by default."""
    for candidate in (model, getattr(model, "_orig_mod", None)):
        declared = getattr(candidate, "keisei_output_heads", None)
        if isinstance(declared, OutputHeads):
            return declared
    return SCALAR_HEADS


def scalar_value_from_wdl(value_logits: torch.Tensor) -> torch.Tensor:
    """``P(W) - P(L)`` of ``(..., 3)`` W/D/L logits (see module docstring)."""
    import torch

    probs = torch.softmax(value_logits, dim=-1)
    return probs[..., 0] - probs[..., 2]


@attrs.frozen
class ActorCriticOutput:
    """Typed view of one ``forward`` call.

    ``policy_logits`` ``(B, A)`` raw and unmasked; ``value`` ``(B,)`` what PPO uses (the
    scalar head, or P(W) - P(L)); ``value_wdl_logits`` ``(B, 3)`` and ``score_lead`` ``(B,)``
    when the model has those heads.
    """

    policy_logits: torch.Tensor
    value: torch.Tensor
    value_wdl_logits: torch.Tensor | None = None
    score_lead: torch.Tensor | None = None

    def heads(self) -> dict[str, torch.Tensor]:
        """Every head present, by the names validation and reports use."""
        found = {"policy": self.policy_logits, "value": self.value}
        if self.value_wdl_logits is not None:
            found[HEAD_VALUE_WDL] = self.value_wdl_logits
        if self.score_lead is not None:
            found[HEAD_SCORE] = self.score_lead
        return found

    def spatial_policy(self, space: ActionSpace) -> torch.Tensor:
        """The policy logits as ``(B, board, board, move_types)`` for a spatial action space."""
        return space.spatial_view(self.policy_logits)


def extra_outputs(model: nn.Module | Any, raw: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The outputs after ``(policy, value)`` by head name (empty for scalar models)."""
    heads = output_heads(model)
    if len(raw) != 2 + len(heads.extra):
        raise InputError(
            f"{type(model).__name__}.forward returned {len(raw)} outputs; its declared heads are "
            f"{list(heads.names)}"
        )
    return dict(zip(heads.extra, raw[2:], strict=True))


def read_outputs(model: nn.Module | Any, raw: Sequence[torch.Tensor]) -> ActorCriticOutput:
    """Interpret ``model(obs)``'s tuple by the heads ``model`` declares."""
    if not isinstance(raw, Sequence) or len(raw) < 2:
        raise InputError(f"{type(model).__name__}.forward must return (policy_logits, value, ...)")
    extra = extra_outputs(model, raw)
    return ActorCriticOutput(
        policy_logits=raw[0],
        value=raw[1].reshape(-1),
        value_wdl_logits=extra.get(HEAD_VALUE_WDL),
        score_lead=extra[HEAD_SCORE].reshape(-1) if HEAD_SCORE in extra else None,
    )


def forward_heads(model: nn.Module | Any, obs: torch.Tensor) -> ActorCriticOutput:
    """``read_outputs(model, model(obs))``."""
    return read_outputs(model, model(obs))


def extra_head_outputs(model: nn.Module | Any, raw: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``forward.<head>`` entries for validation: every head after the PPO pair, detached,
    compared with the tolerance of the precision the strategy computes in (W/D/L logits and
    the score lead are logits-like outputs of the same network)."""
    return {f"forward.{name}": tensor.detach() for name, tensor in extra_outputs(model, raw).items()}


def head_training_loss(model: nn.Module | Any, raw: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """A loss on every head after the PPO pair (None for scalar models): the W/D/L
    cross-entropy against a win and the squared score lead, as Keisei 2026 trains them
    (``wdl_cross_entropy_loss``, score MSE), with fixed targets. Contracts and validation add
    it to their PPO-like loss so the extra heads' parameters get gradients that are checked."""
    import torch

    extra = extra_outputs(model, raw)
    terms = []
    if HEAD_VALUE_WDL in extra:
        terms.append(-torch.log_softmax(extra[HEAD_VALUE_WDL].float(), dim=-1)[:, 0].mean())
    if HEAD_SCORE in extra:
        terms.append(extra[HEAD_SCORE].float().pow(2).mean())
    return torch.stack(terms).sum() if terms else None
