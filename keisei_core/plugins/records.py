"""What ``keisei plugins`` shows about each plugin."""

from __future__ import annotations

import attrs

from keisei_core.statuses import PluginStatus

SOURCES = ("builtin", "installed", "local")
STATUSES = tuple(status.value for status in PluginStatus)


@attrs.define
class PluginRecord:
    """One plugin: where it comes from, whether it loaded, and why not."""

    name: str
    source: str
    target: str
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = PluginStatus.NOT_LOADED
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    registered: dict[str, list[str]] = attrs.field(factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "distribution": self.distribution,
            "version": self.version,
            "status": str(self.status),
            "error": self.error,
            "hooks": list(self.hooks),
            "registered": {k: list(v) for k, v in self.registered.items()},
        }
