"""The strategy contract: what a compilation strategy or model transform must do.

One line in a plugin's tests runs it::

    from keisei_core.testing import StrategyContract

    class TestMyBackend(StrategyContract):
        strategy_name = "my-backend"

The suite checks, through ``keisei_core.compile.compile_model`` (composition, validation
and fallback live there): the strategy is registered with a sane spec and composes;
on every registered model that runs on the device (options shrunk, see
:func:`keisei_core.testing.options.shrunk_options`) it compiles and stays equivalent to
eager on inputs the compile never saw -- forward, ``evaluate_actions`` and deterministic
actions -- with the eager state_dict keys; and on a model that misbehaves once
transformed (:mod:`keisei_core.testing.failing`: one raises, one drifts) it falls back
to eager with a reason, or raises ``CompileFailedError`` when fallback is off.

A strategy declines a model it cannot apply to by raising a
:class:`~keisei_core.errors.KeiseiError` subclass from ``apply`` (one clear line);
such pairs are skipped with that reason. Any other fallback fails the test.

Class attributes: ``strategy_name`` (or ``strategy_names``), ``models`` (names or
``(name, options)`` pairs; default every registered model), ``model_size`` (``shrunk``,
``auto`` or ``preset`` for registered models), ``failing_kinds``, ``plugins``,
``device``, ``batch_size``, ``compile_batch_sizes`` (default 1 and ``batch_size``),
``allow_fallback``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest
import torch

from keisei_core.plugins import PluginHost
from keisei_core.statuses import CompileStatus
from keisei_core.testing import cases as c
from keisei_core.testing.base import ContractBase
from keisei_core.testing.model_contract import CaseEntry, check_equivalence, option, slow_marks


class StrategyContract(ContractBase):
    """Subclass (one line: ``strategy_name = "..."``) to run the strategy contract."""

    strategy_name: ClassVar[str | None] = None
    strategy_names: ClassVar[Sequence[str] | None] = None
    models: ClassVar[Sequence[CaseEntry] | None] = None
    model_size: ClassVar[str] = "shrunk"
    batch_size: ClassVar[int] = 4
    allow_fallback: ClassVar[bool] = False
    failing_kinds: ClassVar[Sequence[str]] = ("refusing", "drifting")
    compile_batch_sizes: ClassVar[Sequence[int] | None] = None

    # -- which strategies and models ------------------------------------------------------
    @classmethod
    def contract_strategies(cls, config: pytest.Config) -> list[str]:
        if cls.strategy_names is not None:
            found = list(cls.strategy_names)
        elif cls.strategy_name is not None:
            found = [cls.strategy_name]
        else:
            raise c.ContractUsageError(
                f"{cls.__name__} subclasses StrategyContract but sets neither strategy_name nor strategy_names"
            )
        pattern = option(config, "keisei_strategies")
        return [name for name in found if not pattern or c.matches(name, pattern)]

    @classmethod
    def model_cases(cls, config: pytest.Config) -> list[c.ModelCase]:
        """The models to check equivalence on (default: every registered model)."""
        if cls.models is not None:
            found = [c.as_case(entry) for entry in cls.models]
        else:
            found = [sized.case for sized in c.registered_cases(cls.contract_host(), cls.model_size)]
        pattern = option(config, "keisei_models")
        return [case for case in found if not pattern or c.matches(case.name, pattern)]

    @classmethod
    def model_pairs(cls, config: pytest.Config, strategies: list[str]) -> list[tuple[str, c.ModelCase]]:
        """(strategy, model case) pairs for the equivalence test: every strategy that runs
        on the device, on every model case."""
        host = cls.contract_host()
        runnable = [s for s in strategies if cls.device in host.strategies.get(s).devices]
        found = cls.model_cases(config)
        return [(name, case) for name in runnable for case in found]

    @classmethod
    def failing_pairs(cls, config: pytest.Config, strategies: list[str]) -> list[tuple[str, str]]:
        """(strategy, failing model) pairs for the fallback test (see keisei_core.testing.failing)."""
        return [(name, failing) for name in strategies for failing in cls.failing_kinds]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        strategies = self.contract_strategies(metafunc.config)
        if "keisei_failing_model" in metafunc.fixturenames:
            host = self.contract_host()
            failing = self.failing_pairs(metafunc.config, strategies)
            metafunc.parametrize(
                ("keisei_strategy_name", "keisei_failing_model"),
                [
                    pytest.param(name, kind, marks=slow_marks(host, name) if kind == "drifting" else [])
                    for name, kind in failing
                ],
                ids=[f"{name}-{kind}" for name, kind in failing],
                scope="class",
            )
        elif "keisei_model_case" in metafunc.fixturenames:
            host = self.contract_host()
            pairs = self.model_pairs(metafunc.config, strategies)
            metafunc.parametrize(
                ("keisei_strategy_name", "keisei_model_case"),
                [pytest.param(name, case, marks=slow_marks(host, name)) for name, case in pairs],
                ids=[f"{name}-{case.id}" for name, case in pairs],
                scope="class",
            )
        elif "keisei_strategy_name" in metafunc.fixturenames:
            metafunc.parametrize("keisei_strategy_name", strategies, scope="class")

    # -- the contract ---------------------------------------------------------------------
    def test_spec_is_declared(self, keisei_contract_host: PluginHost, keisei_strategy_name: str) -> None:
        from keisei_core.compile import parse_composition

        spec = keisei_contract_host.strategies.get(keisei_strategy_name)
        assert spec.description, f"strategy '{spec.name}' has no description (shown by `keisei strategies`)"
        composition = parse_composition(keisei_strategy_name, keisei_contract_host.strategies)
        assert list(composition.names) == [keisei_strategy_name]
        if spec.kind == "transform":
            # A transform composes in front of any compiler, e.g. "my-transform+eager".
            parse_composition(f"{keisei_strategy_name}+eager", keisei_contract_host.strategies)

    def test_equivalent_on_model(
        self, keisei_contract_host: PluginHost, keisei_strategy_name: str, keisei_model_case: c.ModelCase
    ) -> None:
        outcome = c.compiled(
            keisei_contract_host, keisei_model_case, keisei_strategy_name, device=self.device,
            batch_sizes=self.compile_batch_sizes or (1, self.batch_size),
        )
        if outcome.status == CompileStatus.SKIPPED or c.declined(outcome):
            pytest.skip(f"'{keisei_strategy_name}' does not apply to {keisei_model_case.id}: {outcome.reason}")
        if outcome.status != CompileStatus.COMPILED and not self.allow_fallback:
            pytest.fail(
                f"'{keisei_strategy_name}' did not compile {keisei_model_case.id}: status {outcome.status}: {outcome.reason}"
            )
        check_equivalence(keisei_contract_host, keisei_strategy_name, outcome, batch_size=self.batch_size, device=self.device)

    def test_falls_back_on_failing_model(
        self, keisei_contract_host: PluginHost, keisei_strategy_name: str, keisei_failing_model: str
    ) -> None:
        """A model that raises (``refusing``) or drifts (``drifting``) once transformed ends
        as eager, with the reason in the report."""
        from keisei_core.compile import compile_model
        from keisei_core.testing.failing import failing_models

        failing = keisei_failing_model
        model = self._failing_model(keisei_contract_host, keisei_strategy_name, failing)
        result, report = compile_model(
            model, keisei_strategy_name, host=keisei_contract_host, batch_sizes=self._compile_sizes(), training=False,
            speed_seconds=0.0,
        )
        if report.status == CompileStatus.COMPILED:
            pytest.skip(
                f"'{keisei_strategy_name}' runs the {failing} model in plain eager float32 (no tracing, autocast, "
                "dtype or memory-format change), so it cannot misbehave; nothing to fall back from"
            )
        assert report.status == CompileStatus.FALLBACK, f"status {report.status}: {report.reason}"
        assert report.reason, "a fallback must say why"
        assert result is model, "a fallback must hand back the eager model itself"
        reference = failing_models()[failing].to(self.device)
        obs = torch.zeros((2, *model.observation_shape), device=self.device)
        with torch.no_grad():
            torch.testing.assert_close(result(obs), reference(obs))

    def test_raises_without_fallback(self, keisei_contract_host: PluginHost, keisei_strategy_name: str) -> None:
        """``fallback=False``: a failure is a CompileFailedError carrying the report."""
        from keisei_core.compile import CompileFailedError, compile_model

        model = self._failing_model(keisei_contract_host, keisei_strategy_name, "refusing")
        try:
            _, report = compile_model(
                model, keisei_strategy_name, host=keisei_contract_host, batch_sizes=self._compile_sizes(),
                training=False, fallback=False, speed_seconds=0.0,
            )
        except CompileFailedError as error:
            assert error.report.status == CompileStatus.FAILED and error.report.reason
            return
        assert report.status == CompileStatus.COMPILED, f"status {report.status} without fallback must raise"
        pytest.skip(f"'{keisei_strategy_name}' runs the refusing model in plain eager float32; nothing fails")

    def _compile_sizes(self) -> tuple[int, ...]:
        return tuple(self.compile_batch_sizes or (1, self.batch_size))

    def _failing_model(self, host: PluginHost, strategy: str, failing: str) -> torch.nn.Module:
        from keisei_core.testing.failing import failing_models

        spec = host.strategies.get(strategy)
        if self.device not in spec.devices:
            pytest.skip(f"'{strategy}' does not run on {self.device}")
        return failing_models()[failing].to(self.device)

