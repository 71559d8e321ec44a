"""Plugin discovery, isolation and the process-wide host used by the CLI and the API."""

from __future__ import annotations

from collections.abc import Sequence

from keisei_core.plugins.host import PluginHost
from keisei_core.plugins.records import PluginRecord

__all__ = ["PluginHost", "PluginRecord", "configure_host", "get_host"]

_host: PluginHost | None = None


def configure_host(local: Sequence[str] = (), *, strict: bool | None = None) -> PluginHost:
    """Replace the process-wide host (used by the CLI for ``-p`` and ``--strict-plugins``)."""
    global _host
    _host = PluginHost(local, strict=strict)
    return _host


def get_host(load: bool = True) -> PluginHost:
    """The process-wide host, created from the environment on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    if load:
        _host.load()
    return _host
