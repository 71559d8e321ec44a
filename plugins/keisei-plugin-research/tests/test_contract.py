"""The core's model contract over the three families (narrow action counts keep it cheap;
strategy equivalence is the strategy plugins' contract runs)."""

from __future__ import annotations

from keisei_core.testing import ModelContract


class TestResearchFamiliesContract(ModelContract):
    model_cases = [
        ("cell-lattice-tiny", {"num_actions": 300}),
        ("experts-with-ghosts-tiny", {"num_actions": 300}),
        ("square-transformer-tiny", {"num_actions": 300}),
    ]
    max_examples = 3
    strategies = None
