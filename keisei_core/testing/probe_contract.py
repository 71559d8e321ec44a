"""The probe contract: what a benchmark probe must do, run the way ``keisei bench`` runs it.

One line in a plugin's tests runs it::

    from keisei_core.testing import ProbeContract

    class TestMyProbe(ProbeContract):
        probe_name = "my-probe"

Each probe runs inside the real benchmark engine on a small matrix (a small baseline
model under ``eager`` at batch sizes 1 and 4 by default, short timing settings). The
suite checks: the spec is declared (description, unit); no supported cell fails -- a
cell a probe cannot measure must raise ``ProbeUnsupported`` and is recorded as skipped;
every result has the schema (metric, unit matching the spec, a finite value or None,
statistics with a finite median, ``higher_is_better`` matching the spec, JSON
``extra``) and survives the results file's round trip.

Class attributes: ``probe_name`` (or ``probe_names``), ``model_name`` and
``model_options``, ``strategies``, ``batch_sizes``, ``device``, ``plugins``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from keisei_core.plugins import PluginHost
from keisei_core.testing import cases as c
from keisei_core.testing.base import ContractBase

# Short timing: the contract checks what a probe returns, not how precise it is.
QUICK_TIMING: dict[str, Any] = {
    "warmup_seconds": 0.0,
    "min_samples": 3,
    "max_samples": 5,
    "time_budget_seconds": 0.3,
    "target_iqr_ratio": 0.5,
}


class ProbeContract(ContractBase):
    """Subclass (one line: ``probe_name = "..."``) to run the probe contract."""

    probe_name: ClassVar[str | None] = None
    probe_names: ClassVar[Sequence[str] | None] = None
    model_name: ClassVar[str] = "actor-critic"
    model_options: ClassVar[Mapping[str, Any]] = {"conv_channels": 4, "num_actions": 256}
    strategies: ClassVar[Sequence[str]] = ("eager",)
    batch_sizes: ClassVar[Sequence[int]] = (1, 4)

    @classmethod
    def contract_probes(cls, config: pytest.Config) -> list[str]:
        if cls.probe_names is not None:
            return list(cls.probe_names)
        if cls.probe_name is not None:
            return [cls.probe_name]
        raise c.ContractUsageError(f"{cls.__name__} subclasses ProbeContract but sets neither probe_name nor probe_names")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "keisei_probe_name" in metafunc.fixturenames:
            metafunc.parametrize("keisei_probe_name", self.contract_probes(metafunc.config), scope="class")

    @pytest.fixture(scope="class")
    @classmethod
    def keisei_probe_run(
        cls, keisei_contract_host: PluginHost, keisei_probe_name: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Any:
        """The engine's results for this probe over the class's small matrix."""
        from keisei_core.bench.engine import BenchEngine
        from keisei_core.config.converter import structure
        from keisei_core.config.experiment import ExperimentConfig

        out = tmp_path_factory.mktemp(f"probe-{keisei_probe_name}")
        config = structure(
            {
                "name": f"probe-contract-{keisei_probe_name}",
                "models": [{"name": cls.model_name, "options": dict(cls.model_options)}],
                "strategies": list(cls.strategies),
                "probes": [keisei_probe_name],
                "batch_sizes": list(cls.batch_sizes),
                "device": cls.device,
                "output_dir": str(out),
                "bench": dict(QUICK_TIMING),
                "wandb": {"mode": "disabled"},
            },
            ExperimentConfig,
            "probe contract",
        )
        engine = BenchEngine(config, keisei_contract_host, results_path=out / "results.json", progress=False)
        return engine.run()

    # -- the contract ---------------------------------------------------------------------
    def test_spec_is_declared(self, keisei_contract_host: PluginHost, keisei_probe_name: str) -> None:
        spec = keisei_contract_host.probes.get(keisei_probe_name)
        assert spec.description, f"probe '{spec.name}' has no description (shown by `keisei probes`)"
        assert spec.unit, f"probe '{spec.name}' declares no unit"

    def test_supported_cells_do_not_fail(self, keisei_probe_run: Any) -> None:
        failed = [f"{cell.strategy}/b{cell.batch_size}: {cell.reason}" for cell in keisei_probe_run.cells if cell.status == "failed"]
        assert not failed, f"{len(failed)} cell(s) failed (a probe that cannot measure a cell raises ProbeUnsupported): {failed}"
        assert keisei_probe_run.cells, "the engine recorded no cell"
        assert keisei_probe_run.run["status"] == "complete"

    def test_result_schema(self, keisei_contract_host: PluginHost, keisei_probe_name: str, keisei_probe_run: Any) -> None:
        from keisei_core.bench.probe_api import ProbeResult
        from keisei_core.bench.results import load_results

        spec = keisei_contract_host.probes.get(keisei_probe_name)
        measured = [cell for cell in keisei_probe_run.cells if cell.status == "ok"]
        if not measured:
            reasons = sorted({str(cell.reason) for cell in keisei_probe_run.cells})
            pytest.skip(f"probe '{keisei_probe_name}' measured no cell of the matrix: {reasons}")
        for cell in measured:
            result = cell.result
            where = f"probe '{keisei_probe_name}' ({cell.strategy}, batch {cell.batch_size})"
            assert isinstance(result, ProbeResult), f"{where} returned {type(result).__name__}"
            assert result.metric, f"{where}: empty metric name"
            assert result.unit == spec.unit, f"{where}: result unit {result.unit!r} differs from the spec's {spec.unit!r}"
            assert result.value is None or math.isfinite(result.value)
            assert result.higher_is_better == spec.higher_is_better, f"{where}: higher_is_better differs from the spec"
            if result.statistics is not None:
                assert math.isfinite(result.statistics.median), f"{where}: non-finite median"
            json.dumps(result.to_dict(), allow_nan=False)
            assert ProbeResult.from_dict(result.to_dict()).to_dict() == result.to_dict(), f"{where}: to_dict/from_dict"
        reloaded = load_results(keisei_probe_run.path)
        assert [cell.to_dict() for cell in reloaded.cells] == [cell.to_dict() for cell in keisei_probe_run.cells]
