"""The global pooling Keisei 2026 uses in its blocks and heads."""

from __future__ import annotations

import torch


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """``[mean_hw(x), max_hw(x), std_hw(x)]`` -> ``(B, 3C)``; std is the population std
    (``correction=0``), as in Keisei 2026."""
    return torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), x.std(dim=(2, 3), correction=0)), dim=1)
