"""Optional dependencies (the ``testing``, ``wandb`` and ``plots`` extras of keisei-core).

The core lists, builds, compiles and benchmarks without them. A feature that needs one
imports it through :func:`require`, which turns a missing package into one line saying
which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from keisei_core.errors import KeiseiError

# import name -> (distribution, extra of keisei-core that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "pytest": ("pytest", "testing"),
    "hypothesis": ("hypothesis", "testing"),
    "wandb": ("wandb", "wandb"),
    "matplotlib": ("matplotlib", "plots"),
    "pandas": ("pandas", "pandas"),
}


class MissingExtraError(KeiseiError, ImportError):
    """A feature needs a package of one of keisei-core's extras that is not installed."""


def missing_message(module: str, feature: str) -> str:
    dist, extra = EXTRAS[module.partition(".")[0]]
    return f"{feature} needs {dist}, which is not installed: pip install 'keisei-core[{extra}]'"


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    if module in sys.modules:  # None there means "blocked" (tests, import hooks)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.partition(".")[0] != module.partition(".")[0]:
            raise  # the package is there but one of its own imports failed: a real error
        raise MissingExtraError(missing_message(module, feature)) from None
