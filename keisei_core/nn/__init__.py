"""Reference building blocks shared by model plugins and operator plugins."""

from keisei_core.nn.se import (
    SEFunction,
    SEUnit,
    SqueezeExcitation,
    SqueezeExcitationFiLM,
    se_hidden_width,
)

__all__ = ["SEFunction", "SEUnit", "SqueezeExcitation", "SqueezeExcitationFiLM", "se_hidden_width"]
