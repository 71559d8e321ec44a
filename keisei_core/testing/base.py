"""What every contract class shares: the local plugins to load, the device, and the
plugin host (a method for pytest hooks and a class-scoped fixture for tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from keisei_core.plugins import PluginHost
from keisei_core.testing import cases as c


class ContractBase:
    plugins: ClassVar[Sequence[str | Path]] = ()
    device: ClassVar[str] = "cpu"

    @classmethod
    def contract_host(cls) -> PluginHost:
        return c.contract_host([str(p) for p in cls.plugins])

    @pytest.fixture(scope="class")
    @classmethod
    def keisei_contract_host(cls) -> PluginHost:
        return cls.contract_host()
