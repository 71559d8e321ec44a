"""Checks that need the plugin registries: names exist, model options are valid."""

from __future__ import annotations

from keisei_core.config.experiment import ExperimentConfig
from keisei_core.models import resolve_options
from keisei_core.plugins import PluginHost


def check_names(config: ExperimentConfig, host: PluginHost, where: str) -> None:
    """Raise one clear error for the first unknown name or invalid model option."""
    for index, entry in enumerate(config.models):
        spec = host.models.get(entry.name)
        resolve_options(spec, entry.options, where=f"{where}: models[{index}].options")
    for name in config.strategies:
        for part in name.split("+"):
            host.strategies.get(part.strip())
    for name in config.probes:
        host.probes.get(name)
    for name in config.probe_options:
        host.probes.get(name)  # a typo in [probe_options.<name>] is an error, with suggestions
