"""What every command gets: parsed arguments and a lazily created plugin host."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import attrs

from keisei_core.plugins import PluginHost, configure_host


@attrs.define
class CliContext:
    args: argparse.Namespace
    _host: PluginHost | None = None

    def host(self, extra_plugins: Sequence[str] = ()) -> PluginHost:
        """The loaded plugin host with ``-p`` plugins (and a config file's ``plugins``)."""
        if self._host is None:
            local = [*(self.args.plugins or []), *extra_plugins]
            strict = True if self.args.strict_plugins else None
            self._host = configure_host(local, strict=strict).load()
        return self._host
