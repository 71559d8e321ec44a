"""``assert_acts_like``: a compiled actor-critic acts as its eager model does, on one batch;
``randomise_batchnorm``: BatchNorm statistics that make folding and fusion matter.

What the tests of every compile strategy check by hand: the forward outputs, the
deterministic masked actions of ``get_action_and_value`` (which may differ from eager's
only between near-ties, and must be legal), their values and log-probabilities, and
``evaluate_actions`` of eager's actions -- all within ``atol``/``rtol``.
"""

from __future__ import annotations

from typing import Any

import torch


def assert_acts_like(
    eager: Any, compiled: Any, *, batch: int, atol: float, rtol: float, seed: int = 0, max_legal: int = 30
) -> None:
    """Fail with the first output of ``compiled`` that is not eager's on ``batch`` random
    observations and legal masks from ``seed`` (the model's options name the shapes)."""
    from keisei_core.observations import make_legal_masks, make_observations

    def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
        torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)

    options = eager.keisei_model_options
    channels, board, actions_total = options["input_channels"], options["board_size"], options["num_actions"]
    obs = make_observations(batch, channels, board, seed=seed)
    mask = make_legal_masks(batch, actions_total, seed=seed, min_legal=1, max_legal=max_legal)
    with torch.no_grad():
        logits_e, value_e = eager(obs)[:2]
        logits_c, value_c = compiled(obs)[:2]
        assert logits_c.shape == (batch, actions_total) and value_c.shape == (batch,)
        close(logits_c, logits_e)
        close(value_c, value_e)
        action_e, logp_e, v_e = eager.get_action_and_value(obs, mask, deterministic=True)
        action_c, logp_c, v_c = compiled.get_action_and_value(obs, mask, deterministic=True)
        # Argmax may only differ between near-ties; then the chosen logit must be a maximum.
        masked_e = logits_e.masked_fill(~mask, float("-inf"))
        chosen = masked_e.gather(1, action_c.unsqueeze(1)).squeeze(1)
        assert torch.all((action_c == action_e) | (masked_e.max(1).values - chosen <= atol))
        assert bool(mask.gather(1, action_c.unsqueeze(1)).all()), "a deterministic action is illegal"
        close(v_c, v_e)
        same = action_c == action_e
        close(logp_c[same], logp_e[same])
        lp_e, ent_e, val_e = eager.evaluate_actions(obs, action_e, mask)
        lp_c, ent_c, val_c = compiled.evaluate_actions(obs, action_e, mask)
        close(lp_c, lp_e)
        close(ent_c, ent_e)
        close(val_c, val_e)


def randomise_batchnorm(model: Any, seed: int = 0) -> Any:
    """``model`` in eval mode with random BatchNorm statistics and affine parameters: fresh
    BNs are the identity in eval mode, so a strategy that folds or fuses them wrongly would
    still match eager."""
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                if module.running_mean is not None and module.running_var is not None:  # tracked statistics
                    module.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                    module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(c, generator=gen) - 0.5)
    return model.eval()
