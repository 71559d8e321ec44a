"""Checks of a bench config that need the plugin registries: names exist, compositions
keep the composition rules, model options are valid, models fit in memory, probe option
tables fit their probes.

Here, in the bench layer, because they reach the plugin host, the models and the compile
layer's composition parser; the config layer below reads and types the file only."""

from __future__ import annotations

from keisei_core.compile.composition import AUTO, parse_composition
from keisei_core.config.converter import structure
from keisei_core.config.experiment import ExperimentConfig
from keisei_core.errors import ConfigError
from keisei_core.model_size import check_model_size
from keisei_core.models import resolve_options
from keisei_core.plugins import PluginHost


def check_probe_options(config: ExperimentConfig, host: PluginHost, where: str) -> None:
    """Each ``[probe_options.<name>]`` table names a registered probe and fits the options
    class the probe declares (``ProbeSpec.options``); a probe that declares none takes none."""
    for name, table in config.probe_options.items():
        spec = host.probes.get(name)  # a typo in the name is an error, with suggestions
        path = f"probe_options.{name}"
        if spec.options is None:
            if table:
                keys = ", ".join(sorted(str(k) for k in table))
                raise ConfigError(f"{where}: {path}: probe '{name}' takes no options (got {keys})")
            continue
        structure(dict(table), spec.options, where, path=path)


def check_names(config: ExperimentConfig, host: PluginHost, where: str) -> None:
    """Raise one clear error for the first unknown name, invalid model option, model too
    big for this machine, or probe option table that does not fit its probe."""
    for index, entry in enumerate(config.models):
        spec = host.models.get(entry.name)
        options = resolve_options(spec, entry.options, where=f"{where}: models[{index}].options")
        check_model_size(spec, options, f"{where}: models[{index}]")
    for name in config.strategies:
        if name.strip() == AUTO:  # compile_model's tuner, not a registered strategy
            continue
        parse_composition(name, host.strategies)
    for name in config.probes:
        host.probes.get(name)
    check_probe_options(config, host, where)
