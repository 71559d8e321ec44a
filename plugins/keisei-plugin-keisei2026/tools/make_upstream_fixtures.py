"""Write the upstream fixtures of tests/data from Keisei 2026's own code (run once, by hand).

    git --git-dir=<mirror of tachyon-beep/keisei> archive <commit> keisei/training/models \
        keisei/training/checkpoint.py | tar -x -C /tmp/upstream
    PYTHONPATH=/tmp/upstream python tools/make_upstream_fixtures.py tests/data

For each family, a tiny model of Keisei 2026's own class gets deterministic weights (values
k/16 scaled by a power of two; the largest matrices mostly zero, so the files compress), is
saved with Keisei 2026's ``save_checkpoint`` (optimizer, scheduler, GradScaler, RNG states,
architecture tag) and xz-compressed; its outputs on fixed observations, in eval mode and
(for the batch-norm families) train mode, go to ``upstream-outputs.pt.xz``. Nothing of
Keisei 2026 is imported by the tests: they read these files.
"""

from __future__ import annotations

import copy
import lzma
import math
import sys
from pathlib import Path

import torch
from keisei.training.checkpoint import save_checkpoint
from keisei.training.models.mlp import MLPModel, MLPParams
from keisei.training.models.resnet import ResNetModel, ResNetParams
from keisei.training.models.se_resnet import SEResNetModel, SEResNetParams
from keisei.training.models.transformer import TransformerModel, TransformerParams

COMMIT = "08747e10cde233d5c4e4244dbf01b8bfc5c19ccc"
DENSE_LIMIT = 12_000  # entries beyond this are kept at ~DENSE_LIMIT non-zeros


def fixture_weights(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                tensor.fill_(7)  # num_batches_tracked
                continue
            k = torch.randint(-8, 9, tensor.shape, generator=gen).to(tensor.dtype)
            if key.endswith("running_var"):
                tensor.copy_(0.5 + (k + 8) / 16)
            elif tensor.dim() == 1:
                # Norm scales near 1; biases and running means small.
                tensor.copy_(k / 32 + (1.0 if key.endswith("weight") else 0.0))
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else tensor.numel()
                scale = 2.0 ** -round(math.log2(math.sqrt(fan_in)))
                values = k / 8 * scale
                if tensor.numel() > DENSE_LIMIT:
                    keep = torch.rand(tensor.shape, generator=gen) < DENSE_LIMIT / tensor.numel()
                    values = torch.where(keep, values, torch.zeros_like(values))  # +0.0, not -0.0
                tensor.copy_(values)


def observations(batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    obs = torch.zeros(batch, 50, 81)
    occupied = torch.rand(batch, 81, generator=gen) < 0.5
    piece = torch.randint(0, 28, (batch, 81), generator=gen)
    rows, cols = torch.nonzero(occupied, as_tuple=True)
    obs[rows, piece[rows, cols], cols] = 1.0
    obs[:, 28:42, :] = (torch.randint(0, 5, (batch, 14), generator=gen).float() / 4).unsqueeze(-1)
    obs[:, 42, :] = torch.randint(0, 2, (batch, 1), generator=gen).float()
    obs[:, 43, :] = torch.randint(0, 500, (batch, 1), generator=gen).float() / 500
    obs[0, 45, :] = 1.0  # second repetition
    obs[-1, 48, :] = 1.0  # in check
    return obs.view(batch, 50, 9, 9)


def outputs(model: torch.nn.Module, obs: torch.Tensor, train: bool) -> dict[str, torch.Tensor]:
    # A train-mode forward moves batch-norm running statistics: run it on a copy, so the
    # checkpoint holds the weights the eval outputs came from.
    model = copy.deepcopy(model) if train else model
    model.train(train)
    with torch.no_grad():
        out = model(obs)
    model.eval()
    if isinstance(out, tuple):
        return {"policy_logits": out[0], "value": out[1]}
    return {"policy_logits": out.policy_logits, "value_logits": out.value_logits, "score_lead": out.score_lead}


def main(folder: Path) -> None:
    torch.manual_seed(0)
    families = {
        "se_resnet": (SEResNetModel(SEResNetParams(
            num_blocks=2, channels=16, se_reduction=4, global_pool_channels=8,
            policy_channels=4, value_fc_size=16, score_fc_size=8, obs_channels=50)),
            {"num_blocks": 2, "channels": 16, "se_reduction": 4, "global_pool_channels": 8,
             "policy_channels": 4, "value_fc_size": 16, "score_fc_size": 8}, True),
        "resnet": (ResNetModel(ResNetParams(hidden_size=8, num_layers=2)), {"hidden_size": 8, "num_layers": 2}, True),
        "mlp": (MLPModel(MLPParams(hidden_sizes=[16, 8])), {"hidden_sizes": [16, 8]}, False),
        "transformer": (TransformerModel(TransformerParams(d_model=8, nhead=2, num_layers=1)),
                        {"d_model": 8, "nhead": 2, "num_layers": 1}, False),
    }
    reference: dict[str, object] = {"upstream_commit": COMMIT, "torch": str(torch.__version__)}
    obs = observations(2, seed=5)
    reference["obs"] = obs
    for index, (architecture, (model, params, has_bn)) in enumerate(families.items()):
        fixture_weights(model, seed=100 + index)
        model.eval()
        entry: dict[str, object] = {"params": params, "eval": outputs(model, obs, train=False)}
        if has_bn:
            entry["train"] = outputs(model, obs, train=True)
        reference[architecture] = entry
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        raw = folder / f"upstream-{architecture}.pt"
        save_checkpoint(raw, model, optimizer, epoch=3 + index, step=1000 + index, architecture=architecture,
                        scheduler=scheduler, grad_scaler=scaler)
        (folder / f"upstream-{architecture}.pt.xz").write_bytes(lzma.compress(raw.read_bytes(), preset=9))
        raw.unlink()
    buffer = folder / "upstream-outputs.pt"
    torch.save(reference, buffer)
    (folder / "upstream-outputs.pt.xz").write_bytes(lzma.compress(buffer.read_bytes(), preset=9))
    buffer.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
