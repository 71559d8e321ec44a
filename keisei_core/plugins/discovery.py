"""Find plugins without importing them: built-ins, entry points, local files/modules.

Listing reads only package metadata, so ``keisei plugins`` never imports plugin code
or torch (the way torch._dynamo lists its backends).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from keisei_core.hookspecs import ENTRY_POINT_GROUP
from keisei_core.plugins.records import PluginRecord
from keisei_core.statuses import PluginStatus

# Built-in functionality is written as ordinary plugins (dogfooding).
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("builtin.models", "keisei_core.builtin.models"),
    ("builtin.strategies", "keisei_core.builtin.strategies"),
    ("builtin.probes", "keisei_core.builtin.probes"),
)

ENV_ONLY = "KEISEI_PLUGINS"
ENV_DISABLE = "KEISEI_DISABLE_PLUGINS"
ENV_STRICT = "KEISEI_STRICT_PLUGINS"


def _names(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def env_is_strict(env: Mapping[str, str]) -> bool:
    return env.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def builtin_records() -> list[PluginRecord]:
    return [PluginRecord(name=name, source="builtin", target=module) for name, module in BUILTIN_PLUGINS]


def installed_records() -> list[PluginRecord]:
    """Entry points in group ``keisei``, sorted by name so load order is deterministic."""
    records: dict[str, PluginRecord] = {}
    duplicates: list[PluginRecord] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = getattr(ep, "dist", None)
        record = PluginRecord(
            name=ep.name,
            source="installed",
            target=ep.value,
            distribution=dist.name if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        if ep.name in records:
            first = records[ep.name]
            if first.target == ep.value and first.distribution == record.distribution:
                continue  # the same distribution seen twice on sys.path
            record.status = PluginStatus.FAILED
            record.error = (
                f"plugin name '{ep.name}' is also the name of the plugin from "
                f"distribution '{first.distribution}'"
            )
            duplicates.append(record)
            continue
        records[ep.name] = record
    return sorted([*records.values(), *duplicates], key=lambda r: r.name)


def local_records(targets: Sequence[str]) -> list[PluginRecord]:
    """``-p my_models.py`` (a file) or ``-p package.module`` (an importable module)."""
    records = []
    for target in targets:
        if target.endswith(".py") or os.sep in target or "/" in target:
            name = Path(target).stem
        else:
            name = target
        records.append(PluginRecord(name=name, source="local", target=target))
    return records


def apply_selection(records: list[PluginRecord], env: Mapping[str, str]) -> None:
    """Mark records disabled per ``KEISEI_PLUGINS`` (installed only) and ``KEISEI_DISABLE_PLUGINS``."""
    only = _names(env[ENV_ONLY]) if ENV_ONLY in env else None
    disabled = _names(env.get(ENV_DISABLE, ""))
    for record in records:
        if record.status == PluginStatus.FAILED:
            continue
        if record.name in disabled:
            record.status = PluginStatus.DISABLED
            record.error = f"disabled by {ENV_DISABLE}"
        elif only is not None and record.source == "installed" and record.name not in only:
            record.status = PluginStatus.DISABLED
            record.error = f"not named in {ENV_ONLY}"
