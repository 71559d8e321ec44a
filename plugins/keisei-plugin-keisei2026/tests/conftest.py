"""Fixtures for the keisei2026 plugin's tests: a host with only this plugin, and the
upstream fixtures of data/ (written once by tools/make_upstream_fixtures.py from Keisei
2026's own code at the commit named in keisei_plugin_keisei2026.plugin.UPSTREAM_COMMIT)."""

from __future__ import annotations

import io
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from keisei_core.models import build_from_spec, resolve_options
from keisei_core.plugins import PluginHost

DATA = Path(__file__).parent / "data"
ARCHITECTURES = ("se_resnet", "resnet", "mlp", "transformer")


@pytest.fixture(scope="session")
def host() -> PluginHost:
    return PluginHost(env={"KEISEI_PLUGINS": "keisei2026"}, strict=True).load()


@pytest.fixture(scope="session")
def build(host: PluginHost) -> Callable[..., Any]:
    def build_named(name: str, **options: Any) -> Any:
        spec = host.models.get(name)
        # Seeded: unseeded weights depended on which tests had drawn from torch's generator
        # before, so a tolerance measured on one test order could fail on another.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build_from_spec(spec, resolve_options(spec, options))

    return build_named


@pytest.fixture(scope="session")
def upstream_outputs() -> dict[str, Any]:
    data: dict[str, Any] = torch.load(
        io.BytesIO(lzma.decompress((DATA / "upstream-outputs.pt.xz").read_bytes())), weights_only=True
    )
    return data


@pytest.fixture(scope="session")
def upstream_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The path of Keisei 2026's own save_checkpoint file for an architecture (decompressed)."""
    folder = tmp_path_factory.mktemp("upstream")

    def path(architecture: str) -> Path:
        target = folder / f"upstream-{architecture}.pt"
        if not target.exists():
            target.write_bytes(lzma.decompress((DATA / f"upstream-{architecture}.pt.xz").read_bytes()))
        return target

    return path
