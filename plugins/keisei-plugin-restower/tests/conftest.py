"""Fixtures for the restower plugin's tests: a host with only this plugin, and the
reference state_dict listings (copied from ../shared/reference so CI needs no shared/)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keisei_core.models import build_from_spec, resolve_options
from keisei_core.plugins import PluginHost

DATA = Path(__file__).parent / "data"
_LINE = re.compile(r"^(?P<key>\S+)\s+\[(?P<shape>[^\]]*)\]\s*(?P<dtype>\S+)?\s*$")

Listing = list[tuple[str, tuple[int, ...], str | None]]


def parse_listing(path: Path) -> Listing:
    """``key  [d0, d1, ...]  dtype`` per line, in state_dict order."""
    entries: Listing = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        match = _LINE.match(line)
        assert match, f"unparsable listing line: {line!r}"
        shape = tuple(int(d) for d in match["shape"].split(",") if d.strip())
        entries.append((match["key"], shape, match["dtype"]))
    return entries


@pytest.fixture(scope="session")
def restower_listing() -> Listing:
    return parse_listing(DATA / "restower-9x256-se0.25.state_dict.txt")


@pytest.fixture(scope="session")
def baseline_listing() -> Listing:
    return parse_listing(DATA / "actor-critic-baseline.state_dict.txt")


@pytest.fixture(scope="session")
def host() -> PluginHost:
    """Built-ins plus this plugin only, so other plugins' state cannot affect these tests."""
    loaded = PluginHost(env={"KEISEI_PLUGINS": "restower"}, strict=True).load()
    return loaded


@pytest.fixture(scope="session")
def build(host: PluginHost) -> Callable[..., Any]:
    def build_named(name: str, **options: Any) -> Any:
        spec = host.models.get(name)
        return build_from_spec(spec, resolve_options(spec, options))

    return build_named
