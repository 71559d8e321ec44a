"""The core's model contract over the tiny presets of every family (strategy equivalence
runs in tests/test_contracts_all_registered.py and test_compile.py)."""

from __future__ import annotations

from keisei_core.testing import ModelContract


class TestKeisei2026Contract(ModelContract):
    model_cases = [
        "keisei2026-se-resnet-tiny",
        ("keisei2026-resnet", {"hidden_size": 8, "num_layers": 1}),
        ("keisei2026-mlp", {"hidden_sizes": (16,)}),
        ("keisei2026-transformer", {"d_model": 8, "nhead": 2, "num_layers": 1}),
    ]
    max_examples = 5
    strategies = None
