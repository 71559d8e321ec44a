"""keisei_core: the slim core of the keisei plugin-registry platform.

Only light modules load eagerly; torch-dependent names are imported on first access so
that listing plugins never imports torch.
"""

from __future__ import annotations

from typing import Any

from keisei_core.hookspecs import hookimpl
from keisei_core.lazy import lazy_attributes
from keisei_core.specs import ModelSpec, NoOptions, ProbeSpec, StrategyContext, StrategySpec

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "ActorCriticMixin": "keisei_core.actor_critic",
    "ActorCriticProtocol": "keisei_core.actor_critic",
    "list_models": "keisei_core.api",
    "list_strategies": "keisei_core.api",
    "list_probes": "keisei_core.api",
    "build_model": "keisei_core.api",
    "get_model_spec": "keisei_core.api",
    "make_observations": "keisei_core.observations",
    "make_legal_masks": "keisei_core.observations",
    "KeiseiError": "keisei_core.errors",
    "InputError": "keisei_core.errors",
    "ConfigError": "keisei_core.errors",
    "CheckpointError": "keisei_core.errors",
    "UnknownNameError": "keisei_core.errors",
    "PluginError": "keisei_core.errors",
    "save_checkpoint": "keisei_core.checkpoints.store",
    "load_checkpoint": "keisei_core.checkpoints.store",
    "compile_model": "keisei_core.compile",
    "CompileReport": "keisei_core.compile",
}

__all__ = [
    "ModelSpec",
    "NoOptions",
    "ProbeSpec",
    "StrategyContext",
    "StrategySpec",
    "__version__",
    "hookimpl",
    *_LAZY,
]


_lazy_getattr, _lazy_dir = lazy_attributes(globals(), _LAZY, __all__)


def __getattr__(name: str) -> Any:  # a def, so type checkers see the module's lazy names
    return _lazy_getattr(name)


def __dir__() -> list[str]:
    return _lazy_dir()
