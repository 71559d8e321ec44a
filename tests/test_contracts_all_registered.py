"""Every registered model, strategy and probe through the kit's contract suites.

The way timm tests every registered model: whatever plugins are installed, their models
and strategies are held to the same contract a plugin author runs (see
docs/testing.md). To stay within the test budget on a 2-core CPU:

- models run at their preset options when a forward pass costs at most 250 MFLOP per
  sample (measured on the meta device), else at options shrunk by the kit
  (``--keisei-size`` changes this);
- every model is checked under every cheap strategy (eager and transforms, well under a
  second each); each compiler (10-130 s per compile here, growing with the number of
  operators in the graph) once, on the model whose forward dispatches the fewest aten
  operators (``--keisei-matrix families`` adds a cover in which every model family meets
  a compiler, ``--keisei-matrix full`` every pair);
- the fallback test runs the refusing model (fails fast) under every strategy and the
  drifting model (needs a full compile to be caught) under the cheap ones only;
- hypothesis properties run 5 examples per model (each plugin's own contract tests run
  the default 10), and compile_model validates each pair at batch 4 only (one compiled
  graph per pair instead of two).

Probes are held to the probe contract by their own plugins' tests and, for a sample of
the built-ins, by tests/test_testing_kit.py: several built-in probes run child processes
for tens of seconds each, which a run over every probe cannot afford.
"""

from __future__ import annotations

from typing import Any

import pytest

from keisei_core.testing import ModelContract, StrategyContract
from keisei_core.testing import cases as c
from keisei_core.testing.model_contract import option

DEVICE = "cpu"


def _models(config: pytest.Config) -> list[c.SizedCase]:
    size = option(config, "keisei_size") or "auto"
    pattern = option(config, "keisei_models")
    found = c.registered_cases(c.contract_host(), size)
    return [sized for sized in found if not pattern or c.matches(sized.case.name, pattern)]


def _strategies(config: pytest.Config) -> list[Any]:
    pattern = option(config, "keisei_strategies")
    specs = c.strategies_for(c.contract_host(), DEVICE)
    return [spec for spec in specs if not pattern or c.matches(spec.name, pattern)]


def _plan(config: pytest.Config) -> list[tuple[c.ModelCase, str]]:
    return c.matrix_plan(_models(config), _strategies(config), option(config, "keisei_matrix") or "compilers")


class TestEveryModel(ModelContract):
    """The model contract for every registered model (equivalence: see TestEveryStrategy)."""

    # Five examples per property per model: the models' own plugin tests run more.
    max_examples = 5
    # The same (model, strategy) pairs are checked once, by TestEveryStrategy below.
    test_equivalent_under_strategy = None  # type: ignore[assignment]

    @classmethod
    def contract_cases(cls, config: pytest.Config) -> list[c.ModelCase]:
        return [sized.case for sized in _models(config)]


class TestEveryStrategy(StrategyContract):
    """The strategy contract for every registered strategy that runs on the CPU, with
    equivalence checked on the planned (model, strategy) pairs."""

    # One compiled graph per pair: dynamo specialises batch 1 into a graph of its own,
    # which would double every compile. Batch 1 is validated by compile_model's default
    # (1, 8, 64) in the compile core's and each compiler plugin's own tests; this run is
    # about breadth over strategies and models.
    compile_batch_sizes = (4,)

    @classmethod
    def contract_strategies(cls, config: pytest.Config) -> list[str]:
        return [spec.name for spec in _strategies(config)]

    @classmethod
    def model_pairs(cls, config: pytest.Config, strategies: list[str]) -> list[tuple[str, c.ModelCase]]:
        return [(name, case) for case, name in _plan(config) if name in strategies]

    @classmethod
    def failing_pairs(cls, config: pytest.Config, strategies: list[str]) -> list[tuple[str, str]]:
        host = c.contract_host()
        pairs = []
        for name in strategies:
            pairs.append((name, "refusing"))
            if c.is_cheap_strategy(host.strategies.get(name)):
                pairs.append((name, "drifting"))
        return pairs
