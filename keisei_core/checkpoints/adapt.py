"""Keisei 2025's ``load_checkpoint_with_padding``, as an explicit and reported option.

Keisei 2025 loaded a checkpoint of a network with another number of observation planes
(46 -> 51 when feature planes were added) by zero-padding or truncating the stem
convolution's input channels and then loading with ``strict=False``, silently. Here it
happens only when asked (``load_weights(..., adapt_input_channels=True)``, ``keisei info
--weights FILE --adapt-input-channels``), only on the one weight that reads the observation
planes, and the load reports what changed. Every other key must still fit exactly.

- more planes in the model than in the file: the new input channels get zero weights, so
  the network computes what it computed before on the old planes and ignores the new ones;
- fewer: the file's extra input channels are dropped (the network changes; reported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from keisei_core.checkpoints.state_dicts import StateDictMismatch
from keisei_core.errors import CheckpointError

if TYPE_CHECKING:
    import torch


@attrs.frozen
class InputChannelAdaptation:
    key: str
    file_channels: int
    model_channels: int

    def describe(self) -> str:
        how = "zero-padded" if self.model_channels > self.file_channels else "truncated"
        return f"{self.key}: {self.file_channels} -> {self.model_channels} input channels ({how})"


def adapt_input_channels(
    state_dict: Mapping[str, torch.Tensor],
    mismatch: StateDictMismatch,
    observation_channels: int,
    source: str,
) -> tuple[dict[str, torch.Tensor], InputChannelAdaptation]:
    """Pad or truncate the stem's input channels; raise unless that is the only mismatch."""
    import torch

    stems = [
        (key, got, want) for key, got, want in mismatch.misshaped
        if len(got) == 4 and len(want) == 4 and got[0] == want[0] and got[2:] == want[2:]
        and want[1] == observation_channels
    ]
    if mismatch.missing or mismatch.unexpected or len(stems) != 1 or len(mismatch.misshaped) != 1:
        raise CheckpointError(
            f"{source}: input channels can only be adapted when the one mismatch is the stem "
            f"convolution's input channels (reading the {observation_channels} observation planes); "
            f"found {mismatch.describe()}; nothing was loaded"
        )
    key, got, want = stems[0]
    weight = state_dict[key]
    if want[1] > got[1]:
        pad = torch.zeros((got[0], want[1] - got[1], *got[2:]), dtype=weight.dtype, device=weight.device)
        adapted = torch.cat((weight, pad), dim=1)
    else:
        adapted = weight[:, : want[1]].clone()
    out = dict(state_dict)
    out[key] = adapted
    return out, InputChannelAdaptation(key, got[1], want[1])
