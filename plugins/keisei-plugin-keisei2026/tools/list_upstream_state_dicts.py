"""Write Keisei 2026's state_dict listings (key, shape, in order) at keisei's presets.

    PYTHONPATH=/tmp/upstream python tools/list_upstream_state_dicts.py tests/data

Built on the meta device from Keisei 2026's own classes (see make_upstream_fixtures.py for
getting them); one ``key  [d0, d1, ...]`` line per entry.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from keisei.training.models.mlp import MLPModel, MLPParams
from keisei.training.models.resnet import ResNetModel, ResNetParams
from keisei.training.models.se_resnet import SEResNetModel, SEResNetParams
from keisei.training.models.transformer import TransformerModel, TransformerParams

B10C128 = dict(num_blocks=10, channels=128, se_reduction=8, global_pool_channels=64,
               policy_channels=16, value_fc_size=128, score_fc_size=64, obs_channels=50)
LISTINGS = {
    "keisei2026-se-resnet-b10c128": lambda: SEResNetModel(SEResNetParams(**B10C128)),
    "keisei2026-se-resnet-b40c256": lambda: SEResNetModel(SEResNetParams()),
    "keisei2026-resnet": lambda: ResNetModel(ResNetParams(hidden_size=64, num_layers=4)),
    "keisei2026-mlp": lambda: MLPModel(MLPParams(hidden_sizes=[512, 256])),
    "keisei2026-transformer": lambda: TransformerModel(TransformerParams(d_model=16, nhead=2, num_layers=2)),
}


def main(folder: Path) -> None:
    for name, make in LISTINGS.items():
        with torch.device("meta"):
            model = make()
        lines = [f"{key}  [{', '.join(str(d) for d in value.shape)}]" for key, value in model.state_dict().items()]
        (folder / f"{name}.upstream.state_dict.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
