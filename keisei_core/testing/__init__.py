"""The plugin author's kit: hypothesis strategies and contract suites for keisei plugins.

- :mod:`keisei_core.testing.strategies`: observations with the real plane structure,
  legal masks, model option sets drawn from a model's typed options.
- :class:`ModelContract`, :class:`StrategyContract`, :class:`ProbeContract`: test
  classes a plugin's tests subclass with one line (``model_name = "my-net"``).
- The pytest plugin (:mod:`keisei_core.testing.pytest_plugin`, loaded automatically
  through the ``pytest11`` entry point) adds fixtures and ``--keisei-*`` options.

Names load on first access: importing this package imports neither torch nor pytest,
so the pytest plugin stays cheap for test runs that never use the kit. The kit needs
pytest and hypothesis, the ``testing`` extra (``pip install 'keisei-core[testing]'``);
without them, its first name used is one error saying so.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "ModelContract": "keisei_core.testing.model_contract",
    "StrategyContract": "keisei_core.testing.strategy_contract",
    "ProbeContract": "keisei_core.testing.probe_contract",
    "ModelCase": "keisei_core.testing.cases",
    "assert_acts_like": "keisei_core.testing.acting",
    "randomise_batchnorm": "keisei_core.testing.acting",
    "contract_options": "keisei_core.testing.sizing",
    "shrunk_options": "keisei_core.testing.options",
    "strategies": "keisei_core.testing.strategies",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keisei_core.testing' has no attribute {name!r}")
    from keisei_core.optional import require

    for needed in ("pytest", "hypothesis"):
        require(needed, f"keisei_core.testing.{name}")
    if name == "strategies":
        value: Any = importlib.import_module(module)
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
