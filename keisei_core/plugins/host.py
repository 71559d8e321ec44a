"""The plugin host: loads plugins in isolation and fills the registries.

A plugin whose import fails, whose hook raises, or which registers something invalid or
a name already taken is recorded as failed with a one-line reason; nothing it staged is
kept, everything else keeps working. Strict mode turns the first failure into an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pluggy

from keisei_core import hookspecs
from keisei_core.commands_spec import CommandSpec
from keisei_core.errors import PluginError
from keisei_core.import_strings import stamp_owner
from keisei_core.oneline import one_line
from keisei_core.plugins.api_version import api_version_problem
from keisei_core.plugins.discovery import (
    apply_selection,
    builtin_records,
    env_is_strict,
    installed_records,
    local_records,
)
from keisei_core.plugins.importing import import_target
from keisei_core.plugins.records import PluginRecord
from keisei_core.registry import Registration, Registry
from keisei_core.specs import ModelSpec, ProbeSpec, StrategySpec
from keisei_core.statuses import PluginStatus
from keisei_core.suggest import closest_names

# hook name -> (registry attribute, spec type, kind)
_HOOK_TARGETS: dict[str, tuple[str, type, str]] = {
    "keisei_register_models": ("models", ModelSpec, "model"),
    "keisei_register_compile_strategies": ("strategies", StrategySpec, "strategy"),
    "keisei_register_probes": ("probes", ProbeSpec, "probe"),
    "keisei_register_commands": ("commands", CommandSpec, "command"),
}


class _PluginFailure(Exception):
    """Internal: why one plugin could not be loaded (always one line)."""


__all__ = ["PluginHost", "one_line"]  # one_line: re-exported for older imports


def _stderr_warning(message: str) -> None:
    print(f"keisei: warning: {message}", file=sys.stderr)


class PluginHost:
    """Discovers, loads and isolates plugins; owns the model, strategy, probe and command
    registries."""

    def __init__(
        self,
        local: Sequence[str] = (),
        *,
        strict: bool | None = None,
        env: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
        include_installed: bool = True,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.strict = env_is_strict(self.env) if strict is None else strict
        self.models: Registry[ModelSpec] = Registry("model", ModelSpec)
        self.strategies: Registry[StrategySpec] = Registry("strategy", StrategySpec)
        self.probes: Registry[ProbeSpec] = Registry("probe", ProbeSpec)
        self.commands: Registry[CommandSpec] = Registry("command", CommandSpec)
        self._warn = warn or _stderr_warning
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = [
            *builtin_records(),
            *(installed_records() if include_installed else []),
            *local_records(local),
        ]
        apply_selection(self.records, self.env)
        self.loaded = False

    # -- queries -------------------------------------------------------------------------
    def record(self, name: str) -> PluginRecord | None:
        return next((r for r in self.records if r.name == name), None)

    def baseline_strategy(self) -> str | None:
        """The name of the strategy registered with ``baseline=True`` (the built-in eager)."""
        return next((r.name for r in self.strategies if r.spec.baseline), None)

    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == PluginStatus.FAILED]

    # -- loading -------------------------------------------------------------------------
    def load(self) -> PluginHost:
        """Import and register every selected plugin once; later calls do nothing."""
        if self.loaded:
            return self
        self.loaded = True
        for record in self.records:
            if record.status == PluginStatus.FAILED:
                self._report(record)
            elif record.status == PluginStatus.NOT_LOADED:
                self._load_one(record)
        return self

    def _report(self, record: PluginRecord) -> None:
        message = f"plugin '{record.name}' failed: {record.error}"
        if self.strict:
            raise PluginError(message)
        self._warn(message + " (other plugins still loaded; set KEISEI_STRICT_PLUGINS=1 to make this an error)")

    def _load_one(self, record: PluginRecord) -> None:
        plugin: Any = None
        try:
            torch_before = "torch" in sys.modules
            try:
                plugin = import_target(record.target, record.source)
            except Exception as exc:
                raise _PluginFailure(f"import of '{record.target}' failed: {one_line(exc)}") from exc
            if not torch_before and "torch" in sys.modules and record.source != "local":
                # Every keisei command would pay torch's import (~1-2 s) for this plugin.
                # A local plugin (-p) is loaded only where the user asks for it: no warning.
                self._warn(
                    f"plugin '{record.name}' imports torch when '{record.target}' is imported; "
                    "import torch inside the functions that need it (or name them by import "
                    "string) so listing stays fast"
                )
            problem = api_version_problem(getattr(plugin, "KEISEI_PLUGIN_API", None))
            if problem:
                raise _PluginFailure(problem)
            self._register_with_pluggy(record, plugin)
            staged = self._collect(record, plugin)
            self._check_collisions(record, staged)
        except _PluginFailure as failure:
            if plugin is not None and self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            record.status = PluginStatus.FAILED
            record.error = str(failure)
            self._report(record)
            return
        for attr, registrations in staged.items():
            registry: Registry[Any] = getattr(self, attr)
            for registration in registrations:
                registry.add(registration)
            if registrations:
                record.registered[attr] = [r.name for r in registrations]
        record.status = PluginStatus.LOADED

    def _register_with_pluggy(self, record: PluginRecord, plugin: Any) -> None:
        try:
            self._pm.register(plugin, name=f"{record.source}:{record.name}")
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise _PluginFailure(f"invalid hook implementation: {one_line(exc)}") from exc
        problems = self._misspelled_hooks(plugin)
        if problems:
            raise _PluginFailure("; ".join(problems))
        record.hooks = sorted(
            caller.name for caller in (self._pm.get_hookcallers(plugin) or []) if caller.name in _HOOK_TARGETS
        )
        if not record.hooks:
            raise _PluginFailure(
                "implements no keisei hook (expected @hookimpl on one of "
                + ", ".join(hookspecs.HOOK_NAMES)
                + ")"
            )

    def _misspelled_hooks(self, plugin: Any) -> list[str]:
        problems = []
        for attr in dir(plugin):
            if not attr.startswith("keisei_"):
                continue
            marked = self._pm.parse_hookimpl_opts(plugin, attr) is not None
            if attr in _HOOK_TARGETS:
                if not marked and callable(getattr(plugin, attr, None)):
                    problems.append(f"'{attr}' is not decorated with @keisei_core.hookimpl")
                continue
            if marked or attr.startswith("keisei_register"):
                close = closest_names(attr, hookspecs.HOOK_NAMES, limit=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(f"unknown hook '{attr}'{hint}")
        return problems

    def _collect(self, record: PluginRecord, plugin: Any) -> dict[str, list[Registration[Any]]]:
        staged: dict[str, list[Registration[Any]]] = {attr: [] for attr, _, _ in _HOOK_TARGETS.values()}
        for hook_name, (attr, spec_type, kind) in _HOOK_TARGETS.items():
            caller = getattr(self._pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                errors: list[str] = []
                register = self._make_register(record, kind, spec_type, staged[attr], errors)
                kwargs = {"register": register} if "register" in impl.argnames else {}
                try:
                    impl.function(**kwargs)
                except _PluginFailure:
                    raise
                except Exception as exc:
                    raise _PluginFailure(f"hook {hook_name} raised {one_line(exc)}") from exc
                if errors:  # the plugin swallowed our error; it still failed
                    raise _PluginFailure(errors[0])
        return staged

    def _make_register(
        self,
        record: PluginRecord,
        kind: str,
        spec_type: type,
        staged: list[Registration[Any]],
        errors: list[str],
    ) -> Callable[[Any], None]:
        def register(spec: Any) -> None:
            if not isinstance(spec, spec_type):
                message = f"register() for {kind}s takes a {spec_type.__name__}, got {type(spec).__name__}"
            elif any(r.name == getattr(spec, "name", None) for r in staged):
                message = f"{kind} '{getattr(spec, 'name', '?')}' registered twice by the same plugin"
            else:
                staged.append(Registration(stamp_owner(spec, record.name), record.name, record.distribution))
                return
            errors.append(message)
            raise _PluginFailure(message)

        return register

    def _check_collisions(self, record: PluginRecord, staged: dict[str, list[Registration[Any]]]) -> None:
        baselines = [r.name for r in staged["strategies"] if r.spec.baseline]
        holder = self.baseline_strategy()
        if baselines and (holder is not None or len(baselines) > 1):
            holder_plugin = self.strategies.registration(holder).plugin if holder else record.name
            raise _PluginFailure(
                f"strategy '{baselines[-1]}' is marked baseline=True, but '{holder or baselines[0]}' "
                f"(plugin '{holder_plugin}') already is the baseline; only one strategy may be"
            )
        for attr, registrations in staged.items():
            registry: Registry[Any] = getattr(self, attr)
            for registration in registrations:
                owner = registry.owner_of(registration.name)
                if owner is not None:
                    raise _PluginFailure(
                        f"{registry.kind} name '{registration.name}' is already registered by plugin "
                        f"'{owner.plugin}' (distribution {owner.distribution or 'keisei-core/local'}); "
                        f"plugin '{record.name}' (distribution {record.distribution or 'local'}) "
                        "must choose another name"
                    )
