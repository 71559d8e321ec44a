"""The contract suites pass good plugins and fail broken ones, each for its own reason.

Plugin authors' test files run in one nested pytest session (a fresh interpreter), with
local plugin files (as ``keisei -p`` would load them) registering one good and several
deliberately broken models, strategies and probes; the outer tests read its JUnit report.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

pytest_plugins = ("pytester",)

MODELS = '''
import random

import attrs
import torch
from torch import nn

from keisei_core import ActorCriticMixin, ModelSpec, hookimpl


@attrs.frozen
class Options:
    input_channels: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    board_size: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    num_actions: int = attrs.field(default=12, validator=attrs.validators.ge(1))
    width: int = attrs.field(default=4, validator=attrs.validators.ge(1))


class Good(ActorCriticMixin, nn.Module):
    def __init__(self, o):
        super().__init__()
        self.conv = nn.Conv2d(o.input_channels, o.width, 3, padding=1)
        self.bn = nn.BatchNorm2d(o.width)
        flat = o.width * o.board_size ** 2
        self.policy = nn.Linear(flat, o.num_actions)
        self.value = nn.Linear(flat, 1)

    def features(self, obs):
        return torch.relu(self.bn(self.conv(obs))).flatten(1)

    def forward(self, obs):
        h = self.features(obs)
        return self.policy(h), self.value(h).squeeze(-1)


class Lazy(Good):
    """A layer that forward never uses: it can never learn."""

    def __init__(self, o):
        super().__init__(o)
        self.unused = nn.Linear(3, 3)


class Maskless(Good):
    """Samples from the raw logits, ignoring the legal mask."""

    def get_action_and_value(self, obs, legal_mask=None, deterministic=False):
        logits, value = self(obs)
        log_probs = torch.log_softmax(logits, dim=-1)
        action = logits.argmax(-1) if deterministic else torch.multinomial(log_probs.exp(), 1).squeeze(-1)
        return action, log_probs.gather(-1, action[:, None]).squeeze(-1), value


class ColumnValue(Good):
    """Returns values of shape (B, 1) instead of (B,)."""

    def forward(self, obs):
        h = self.features(obs)
        return self.policy(h), self.value(h)


class Unseeded(Good):
    """Initialises a weight from Python's random module, which torch.manual_seed ignores."""

    def __init__(self, o):
        super().__init__(o)
        with torch.no_grad():
            self.value.bias.fill_(random.random())


class Forgetful(Good):
    """Keeps state that changes the outputs in a buffer the state_dict leaves out."""

    def __init__(self, o):
        super().__init__(o)
        self.register_buffer("calls", torch.zeros(()), persistent=False)

    def forward(self, obs):
        if self.training:
            self.calls += 1
        logits, value = super().forward(obs)
        return logits + self.calls, value


def builder(cls):
    return lambda options: cls(options)


@hookimpl
def keisei_register_models(register):
    for name, cls in [("kit-good", Good), ("kit-lazy", Lazy), ("kit-maskless", Maskless),
                      ("kit-column-value", ColumnValue), ("kit-unseeded", Unseeded),
                      ("kit-forgetful", Forgetful)]:
        register(ModelSpec(name=name, build=builder(cls), options=Options, description=name))
'''

STRATEGIES = '''
import torch
from torch import nn

from keisei_core import StrategySpec, hookimpl


def channels_last(model, context):
    # Changes the memory format: the kit's refusing model notices and raises.
    return model.to(memory_format=torch.channels_last)


def noisy(model, context):
    model.register_forward_hook(lambda module, args, out: (out[0] + 0.5, out[1]))
    return model


def renaming(model, context):
    class Holder(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, obs):
            return self.inner(obs)

        def get_action_and_value(self, *args, **kwargs):
            return self.inner.get_action_and_value(*args, **kwargs)

        def evaluate_actions(self, *args, **kwargs):
            return self.inner.evaluate_actions(*args, **kwargs)

    return Holder(model)


@hookimpl
def keisei_register_compile_strategies(register):
    register(StrategySpec(name="kit-channels-last", apply=channels_last, kind="transform",
                          description="channels-last memory format"))
    register(StrategySpec(name="kit-noisy", apply=noisy, kind="transform", description="adds noise"))
    register(StrategySpec(name="kit-renaming", apply=renaming, kind="transform", description="wraps"))
'''

PROBES = '''
from keisei_core import ProbeSpec, hookimpl
from keisei_core.bench.probe_api import ProbeResult, ProbeUnsupported


def good(context):
    model, obs = context.model, context.observations()
    stats = context.time(lambda: model(obs)).scaled(1e3, "ms")
    return ProbeResult("kit-good-probe", "ms", stats.median, stats, higher_is_better=False)


def wrong_unit(context):
    return ProbeResult("kit-wrong-unit", "s", 1.0, None, higher_is_better=False)


def crashing(context):
    raise RuntimeError("this probe is broken")


def picky(context):
    raise ProbeUnsupported("measures nothing on this machine")


@hookimpl
def keisei_register_probes(register):
    register(ProbeSpec("kit-good-probe", good, unit="ms", higher_is_better=False, description="forward ms"))
    register(ProbeSpec("kit-wrong-unit", wrong_unit, unit="ms", higher_is_better=False, description="wrong unit"))
    register(ProbeSpec("kit-crashing", crashing, unit="ms", description="raises"))
    register(ProbeSpec("kit-picky", picky, unit="ms", description="never supported"))
'''



MODEL_CLASSES = {
    "Good": "kit-good",
    "Lazy": "kit-lazy",
    "Maskless": "kit-maskless",
    "ColumnValue": "kit-column-value",
    "Unseeded": "kit-unseeded",
    "Forgetful": "kit-forgetful",
}

TEST_MODELS = """
from pathlib import Path
from keisei_core.testing import ModelContract

HERE = Path(__file__).parent
PLUGINS = [str(HERE / "kit_models.py"), str(HERE / "kit_strategies.py")]
""" + "".join(
    f"""

class Test{cls}(ModelContract):
    model_name = "{name}"
    plugins = PLUGINS
    strategies = ["eager", "kit-channels-last"]
    max_examples = 8
"""
    for cls, name in MODEL_CLASSES.items()
)

TEST_STRATEGIES = """
from pathlib import Path
from keisei_core.testing import StrategyContract

HERE = Path(__file__).parent


class Base(StrategyContract):
    plugins = [str(HERE / "kit_models.py"), str(HERE / "kit_strategies.py")]
    models = ["kit-good", ("actor-critic", {"conv_channels": 2, "num_actions": 20})]


class TestGoodStrategy(Base):
    strategy_name = "kit-channels-last"


class TestNoisy(Base):
    strategy_name = "kit-noisy"


class TestRenaming(Base):
    strategy_name = "kit-renaming"
"""

TEST_PROBES = """
from pathlib import Path
from keisei_core.testing import ProbeContract


class Base(ProbeContract):
    plugins = [str(Path(__file__).with_name("kit_probes.py"))]
    model_options = {"conv_channels": 2, "num_actions": 20}


class TestGoodProbe(Base):
    probe_name = "kit-good-probe"


class TestWrongUnit(Base):
    probe_name = "kit-wrong-unit"


class TestCrashing(Base):
    probe_name = "kit-crashing"


class TestPicky(Base):
    probe_name = "kit-picky"


class TestBuiltinProbes(ProbeContract):
    probe_names = ["latency", "throughput", "train-step", "flops"]
"""

TEST_EMPTY = """
from keisei_core.testing import ModelContract


class TestNothing(ModelContract):
    pass
"""

# Broken models fail on purpose; shrinking their counterexamples would only cost time.
CONFTEST = """
from hypothesis import Phase, settings

settings.register_profile("kit", deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile("kit")
"""

MODEL_TESTS = [
    "test_builds_from_registry",
    "test_forward_shapes_and_finite",
    "test_masks_are_honoured",
    "test_sampled_actions_are_legal",
    "test_evaluate_actions_agrees_with_acting",
    "test_every_parameter_receives_a_gradient",
    "test_state_dict_round_trip",
    "test_checkpoint_round_trip",
    "test_deterministic_under_seed",
    "test_equivalent_under_strategy",
]

RANK = {"passed": 0, "skipped": 1, "failed": 2}


def _outcomes(junit: Path) -> dict[str, dict[str, str]]:
    """{class: {test (without parameters): worst outcome over its parametrisations}}."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        test = case.get("name", "").split("[")[0]
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        previous = found[cls].get(test, "passed")
        found[cls][test] = outcome if RANK[outcome] > RANK[previous] else previous
    return found


class KitRun:
    def __init__(self, outcomes: dict[str, dict[str, str]], output: str) -> None:
        self.outcomes = outcomes
        self.output = output

    def __getitem__(self, cls: str) -> dict[str, str]:
        return self.outcomes[cls]


@pytest.fixture(scope="module")
def kit_run(tmp_path_factory: pytest.TempPathFactory) -> KitRun:
    """One nested pytest session in a fresh interpreter over every kit test file.

    A subprocess, not pytester's in-process run: pytester restores sys.modules after
    each run, and re-importing torch's compiler stack (triton's extension modules) in
    one process crashes it.
    """
    folder = tmp_path_factory.mktemp("kit")
    files = {
        "kit_models.py": MODELS,
        "kit_strategies.py": STRATEGIES,
        "kit_probes.py": PROBES,
        "test_models.py": TEST_MODELS,
        "test_strategies.py": TEST_STRATEGIES,
        "test_probes.py": TEST_PROBES,
        "test_empty.py": TEST_EMPTY,
        "conftest.py": CONFTEST,
    }
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    junit = folder / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0",
         "--continue-on-collection-errors", f"--junitxml={junit}", "--rootdir", str(folder), str(folder)],
        cwd=folder, capture_output=True, text=True, timeout=900, check=False,
    )
    assert junit.is_file(), f"the nested pytest session wrote no report: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return KitRun(_outcomes(junit), done.stdout)


@pytest.mark.slow
def test_model_contract_passes_a_good_model(kit_run: KitRun) -> None:
    assert kit_run["TestGood"] == dict.fromkeys(MODEL_TESTS, "passed")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "failing"),
    [
        ("TestLazy", {"test_every_parameter_receives_a_gradient"}),
        ("TestMaskless", {"test_masks_are_honoured", "test_sampled_actions_are_legal", "test_evaluate_actions_agrees_with_acting"}),
        ("TestColumnValue", {"test_forward_shapes_and_finite"}),
        ("TestUnseeded", {"test_deterministic_under_seed"}),
        ("TestForgetful", {"test_state_dict_round_trip", "test_checkpoint_round_trip"}),
    ],
)
def test_model_contract_fails_a_broken_model_for_its_defect(
    kit_run: KitRun, cls: str, failing: set[str]
) -> None:
    failed = {test for test, outcome in kit_run[cls].items() if outcome == "failed"}
    assert failing <= failed, f"{cls}: expected {sorted(failing)} to fail, got {kit_run[cls]}"
    assert "test_builds_from_registry" not in failed


@pytest.mark.slow
def test_strategy_contract_passes_a_good_strategy_and_fails_broken_ones(kit_run: KitRun) -> None:
    assert set(kit_run["TestGoodStrategy"].values()) == {"passed"}, kit_run["TestGoodStrategy"]
    assert kit_run["TestGoodStrategy"]["test_falls_back_on_failing_model"] == "passed"
    assert kit_run["TestNoisy"]["test_equivalent_on_model"] == "failed"  # differs from eager: fallback
    assert kit_run["TestRenaming"]["test_equivalent_on_model"] == "failed"  # renamed state_dict keys


@pytest.mark.slow
def test_probe_contract_passes_good_probes_and_fails_broken_ones(kit_run: KitRun) -> None:
    assert set(kit_run["TestGoodProbe"].values()) == {"passed"}, kit_run["TestGoodProbe"]
    assert set(kit_run["TestBuiltinProbes"].values()) == {"passed"}, kit_run["TestBuiltinProbes"]
    assert kit_run["TestWrongUnit"]["test_result_schema"] == "failed"
    assert kit_run["TestCrashing"]["test_supported_cells_do_not_fail"] == "failed"
    assert kit_run["TestPicky"] == {
        "test_spec_is_declared": "passed",
        "test_supported_cells_do_not_fail": "passed",
        "test_result_schema": "skipped",
    }


class _Config:
    """Stands in for pytest.Config in calls to the contracts' case selection."""

    def __init__(self, **options: object) -> None:
        self.options = options

    def getoption(self, name: str) -> object:
        return self.options.get(name)


def test_command_line_options_narrow_the_cases() -> None:
    from keisei_core.testing import ModelContract, StrategyContract

    class Both(ModelContract):
        model_cases = ["actor-critic", ("actor-critic", {"conv_channels": 2}), "restower-small"]
        strategies = "eager, channels-*"

    config: Any = _Config(keisei_models="actor-*")
    assert [case.id for case in Both.contract_cases(config)] == ["actor-critic", "actor-critic[conv_channels=2]"]
    narrowed: Any = _Config(keisei_strategies="eager")
    assert Both.strategy_names(narrowed) == ["eager"]

    class Every(StrategyContract):
        strategy_names = ["eager"]

    assert Every.contract_strategies(_Config(keisei_strategies="inductor*")) == []  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_contract_without_a_subject_is_one_clear_error(kit_run: KitRun) -> None:
    assert "TestNothing subclasses ModelContract but sets neither model_name nor model_cases" in kit_run.output


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(
        ["*--keisei-models=PATTERN*", "*--keisei-strategies=PATTERN*", "*--keisei-size*", "*--keisei-matrix*"]
    )
