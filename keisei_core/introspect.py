"""Facts about a built model: its input/output shapes, sizes and FLOPs.

The shapes come from the spaces a model declares (``keisei_spaces``, see
:mod:`keisei_core.spaces`) when it does; else the input shape from the module's
``observation_shape`` attribute when it has one,
else from the conventional option names ``input_channels`` and ``board_size``; the
number of actions from ``num_actions`` likewise. Every bundled model follows this
convention, and the model contract test checks it.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.errors import KeiseiError


@attrs.frozen
class ModelShapes:
    observation: tuple[int, int, int]
    num_actions: int


def model_shapes(model: nn.Module) -> ModelShapes:
    from keisei_core.spaces import ModelSpaces

    spaces = getattr(model, "keisei_spaces", None)
    if isinstance(spaces, ModelSpaces):
        return ModelShapes(spaces.observation.shape, spaces.actions.size)
    options: dict[str, Any] = getattr(model, "keisei_model_options", {}) or {}
    shape = getattr(model, "observation_shape", None)
    if shape is None:
        try:
            board = int(options["board_size"])
            shape = (int(options["input_channels"]), board, board)
        except KeyError:
            raise KeiseiError(
                f"{type(model).__name__} declares no observation_shape and its options have no "
                "input_channels/board_size"
            ) from None
    actions = getattr(model, "num_actions", None) or options.get("num_actions")
    if actions is None:
        raise KeiseiError(f"{type(model).__name__} declares no num_actions")
    return ModelShapes(tuple(int(s) for s in shape), int(actions))  # type: ignore[arg-type]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, batch_size: int = 2) -> int:
    """Forward FLOPs per sample, counted by torch's FlopCounterMode (eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    from keisei_core.observations import make_observations

    shapes = model_shapes(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    obs = make_observations(batch_size, shapes.observation[0], shapes.observation[1], device=device)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(obs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // batch_size)
