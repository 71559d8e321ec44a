"""The spaces Keisei 2026's models declare."""

from __future__ import annotations

from keisei_core.plugin import KEISEI_2026, ModelSpaces, ObservationSpace

BOARD = 9


def spaces_for(input_channels: int) -> ModelSpaces:
    """Keisei 2026's spaces; the 2026 plane encoding when the model reads its 50 planes
    (other channel counts, e.g. a padded stem, get a generic encoding of that size)."""
    observation = (
        KEISEI_2026.observation
        if input_channels == KEISEI_2026.observation.channels
        else ObservationSpace(input_channels, BOARD)
    )
    return ModelSpaces(observation, KEISEI_2026.actions)
