"""The core's model contract over small ResTowers (strategy equivalence is left to the
strategy plugins' own contract runs, which compile)."""

from __future__ import annotations

from keisei_core.testing import ModelContract


class TestResTowerContract(ModelContract):
    # Narrow widths and action counts keep this cheap; the full-size presets are covered
    # by test_models.py, and every variant's gradients and masks there as well.
    model_cases = [
        ("restower-small", {"width": 8, "num_actions": 500}),
        ("restower-gpool", {"depth": 1, "width": 8, "num_actions": 500, "board_size": 7}),
    ]
    max_examples = 5
    strategies = None
