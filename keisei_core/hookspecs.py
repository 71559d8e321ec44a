"""The four extension points of keisei. Plugins implement them with ``@hookimpl``.

Each hook receives a ``register`` callback; the core owns naming rules and collisions,
so the order in which plugins load never changes what they may register.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "keisei"
API_VERSION = "1.2"
"""The plugin API version (``MAJOR.MINOR``): these hooks and :mod:`keisei_core.plugin`.

1.1 added ``SEFunction`` (the parameter-free SE unit that blocks owning their SE weights call)
and ``StrategySpec.train_only``; 1.2 added the typed compile report (``CompileReport``, ``Failure``,
``CompileStatus``, ``FailureKind``, ``Composition``, ``report_data``, ``report_from_data``),
the helpers of exported-graph runners (``check_exported_cell``, ``check_exported_input``,
``check_eval_mode``, ``export_example``, ``exported_observation_shape``, ``weights_fingerprint``,
``file_sha256``, ``verify_sidecar``, ``EXPORT_BATCH``), the benchmark pipeline for runners
(``run_bench``, ``Executor``, ``GroupJob``, ``Reporter``, ``TableReporter``) and the timing
helpers ``paired_ratio`` and ``time_calls``, and dropped the engine internals 1.0 listed as
provisional for runners (``BenchEngine``, ``check_support``, ``now_iso``, ...)."""
ENTRY_POINT_GROUP = "keisei"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def keisei_register_models(register: Callable[[Any], None]) -> None:
    """Register model architectures: call ``register(ModelSpec(...))`` once per model."""


@hookspec
def keisei_register_compile_strategies(register: Callable[[Any], None]) -> None:
    """Register compilation strategies: call ``register(StrategySpec(...))`` once per strategy."""


@hookspec
def keisei_register_probes(register: Callable[[Any], None]) -> None:
    """Register benchmark probes: call ``register(ProbeSpec(...))`` once per probe."""


@hookspec
def keisei_register_commands(register: Callable[[Any], None]) -> None:
    """Add ``keisei`` subcommands: call ``register(CommandSpec(...))`` once per command."""


HOOK_NAMES: tuple[str, ...] = (
    "keisei_register_models",
    "keisei_register_compile_strategies",
    "keisei_register_probes",
    "keisei_register_commands",
)
