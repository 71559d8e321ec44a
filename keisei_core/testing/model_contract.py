"""The model contract: what "works with keisei" means for a model, as tests to inherit.

One line in a plugin's tests runs all of it::

    from keisei_core.testing import ModelContract

    class TestMyNet(ModelContract):
        model_name = "my-net"
        model_options = {"width": 16}      # optional: options to test at

The suite checks: the registered name builds with its typed options and declares its
shapes; ``forward`` gives finite ``(B, A)`` logits and ``(B,)`` values at batch sizes
from 1 up; masks are honoured (illegal actions get no probability, deterministic picks
the best legal action); sampled actions are always legal; ``evaluate_actions`` agrees
with ``get_action_and_value``; every parameter receives a gradient from a PPO-style loss;
state_dict, keisei checkpoints (rebuilt from their recorded name and options) and
Keisei's checkpoint files round-trip; building and sampling are deterministic
under a seed; and the model is equivalent to itself under every installed strategy that
runs on the device (through ``keisei_core.compile``'s validated ``compile_model``).

Class attributes tune it (all optional except the model): ``model_cases`` (several
names or ``(name, options)`` pairs instead of ``model_name``), ``plugins`` (local plugin
files or modules to load, as with ``keisei -p``), ``device``, ``batch_size``,
``max_examples`` (hypothesis examples per property), ``strategies`` (shell patterns of
the strategies to check equivalence under; ``None`` for none), ``allow_fallback``,
``no_gradient_ok`` (patterns of parameter names allowed to get no gradient),
``gradient_steps`` and ``compile_batch_sizes`` (what compile_model validates at; default
1 and ``batch_size``). Command-line options of the pytest plugin narrow a run:
``--keisei-models PATTERN`` and ``--keisei-strategies PATTERN``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from keisei_core.actor_critic import ActorCriticProtocol
from keisei_core.compile.policy_checks import is_quantized
from keisei_core.heads import (
    VALUE_WDL,
    extra_outputs,
    head_training_loss,
    output_heads,
    read_outputs,
    scalar_value_from_wdl,
)
from keisei_core.introspect import model_shapes
from keisei_core.models import resolve_options
from keisei_core.plugins import PluginHost
from keisei_core.spaces import legal_masks_for, observations_for
from keisei_core.statuses import CompileStatus
from keisei_core.testing import cases as c
from keisei_core.testing import strategies as ks
from keisei_core.testing.base import ContractBase
from keisei_core.testing.tolerances import assert_close, tolerance_for

CaseEntry = str | tuple[str, Mapping[str, Any]] | c.ModelCase
# An nn.Module with the actor-critic methods (nn.Module's __getattr__ typing hides them).
Model = Any


def run_examples(strategy: st.SearchStrategy[Any], check: Callable[[Any], None], max_examples: int) -> None:
    """Run ``check`` on ``max_examples`` hypothesis examples (shrinking on failure).

    Settings are explicit so a plugin's test run behaves the same with or without the
    project's hypothesis profile: compiled and large models make deadlines meaningless.
    """

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(strategy)
    def examples(example: Any) -> None:
        check(example)

    examples()


def option(config: pytest.Config, name: str) -> Any:
    """A ``--keisei-*`` option, or None when the pytest plugin is not loaded."""
    try:
        return config.getoption(name)
    except ValueError:
        return None


def slow_marks(host: PluginHost, strategy: str) -> list[pytest.MarkDecorator]:
    """``slow`` for compilers (tens of seconds per compile), nothing for cheap transforms."""
    parts = c.composition(host, strategy).parts
    return [] if all(c.is_cheap_strategy(spec) for spec in parts) else [pytest.mark.slow]


class ModelContract(ContractBase):
    """Subclass (one line: ``model_name = "..."``) to run the model contract. See module doc."""

    model_name: ClassVar[str | None] = None
    model_options: ClassVar[Mapping[str, Any]] = {}
    model_cases: ClassVar[Sequence[CaseEntry] | None] = None
    batch_size: ClassVar[int] = 4
    max_examples: ClassVar[int] = 10
    strategies: ClassVar[str | Sequence[str] | None] = "*"
    allow_fallback: ClassVar[bool] = False
    no_gradient_ok: ClassVar[Sequence[str]] = ()
    gradient_steps: ClassVar[int] = 3
    compile_batch_sizes: ClassVar[Sequence[int] | None] = None

    # -- which models and strategies ------------------------------------------------------
    @classmethod
    def contract_cases(cls, config: pytest.Config) -> list[c.ModelCase]:
        """The model cases this class tests (override to compute them)."""
        if cls.model_cases is not None:
            found = [c.as_case(entry) for entry in cls.model_cases]
        elif cls.model_name is not None:
            found = [c.ModelCase(cls.model_name, dict(cls.model_options))]
        else:
            raise c.ContractUsageError(
                f"{cls.__name__} subclasses ModelContract but sets neither model_name nor model_cases"
            )
        pattern = option(config, "keisei_models")
        return [case for case in found if not pattern or c.matches(case.name, pattern)]

    @classmethod
    def strategy_names(cls, config: pytest.Config) -> list[str]:
        """Installed strategies that run on ``device`` in float32, narrowed by
        ``strategies`` and ``--keisei-strategies``."""
        names = [s.name for s in c.strategies_for(cls.contract_host(), cls.device)]
        chosen = [n for n in names if c.matches(n, cls.strategies)]
        pattern = option(config, "keisei_strategies")
        return [n for n in chosen if not pattern or c.matches(n, pattern)]

    @classmethod
    def strategy_pairs(cls, config: pytest.Config, found: list[c.ModelCase]) -> list[tuple[c.ModelCase, str]]:
        """(case, strategy) pairs for the equivalence test: every case under every strategy."""
        names = cls.strategy_names(config)
        return [(case, name) for case in found for name in names]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        found = self.contract_cases(metafunc.config)
        if "keisei_strategy_name" in metafunc.fixturenames:
            host = self.contract_host()
            pairs = self.strategy_pairs(metafunc.config, found)
            metafunc.parametrize(
                ("keisei_model_case", "keisei_strategy_name"),
                [pytest.param(case, name, marks=slow_marks(host, name)) for case, name in pairs],
                ids=[f"{case.id}-{name}" for case, name in pairs],
                scope="class",
            )
        elif "keisei_model_case" in metafunc.fixturenames:
            metafunc.parametrize("keisei_model_case", found, ids=[case.id for case in found], scope="class")

    # -- fixtures -------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def keisei_model(cls, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase) -> nn.Module:
        """The model under test, built from seed 0, in eval mode. Do not mutate it."""
        return c.build(keisei_contract_host, keisei_model_case, device=cls.device)

    def build(self, host: PluginHost, case: c.ModelCase, seed: int = c.DEFAULT_SEED) -> Model:
        return c.build(host, case, seed=seed, device=self.device)

    def batches(self, model: nn.Module, *, max_legal: int | None = None) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor]]:
        shapes = model_shapes(model)
        channels, board, _ = shapes.observation
        return ks.observation_batches(
            channels=channels,
            board_size=board,
            num_actions=shapes.num_actions,
            batch_size=ks.batch_sizes(self.batch_size),
            max_legal=max_legal,
            device=self.device,
        )

    def fixed_batch(self, model: nn.Module, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        obs = observations_for(model, batch_size, seed=seed, device=self.device)
        return obs, legal_masks_for(model, batch_size, seed=seed, device=self.device)

    # -- the contract ---------------------------------------------------------------------
    def test_builds_from_registry(
        self, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase, keisei_model: Model
    ) -> None:
        spec = keisei_contract_host.models.get(keisei_model_case.name)
        assert isinstance(keisei_model, nn.Module), f"build() returned {type(keisei_model).__name__}, not an nn.Module"
        assert isinstance(keisei_model, ActorCriticProtocol), (
            "the model lacks get_action_and_value/evaluate_actions: inherit keisei_core.ActorCriticMixin"
        )
        shapes = model_shapes(keisei_model)  # conventional option names or declared attributes
        assert len(shapes.observation) == 3 and all(s >= 1 for s in shapes.observation)
        assert shapes.num_actions >= 1
        assert any(p.requires_grad for p in keisei_model.parameters()), "the model has no trainable parameter"
        # The rebuild recipe (what checkpoints store) must give back the same options.
        recipe: dict[str, Any] = keisei_model.keisei_model_options  # type: ignore[assignment]
        assert resolve_options(spec, recipe) == resolve_options(spec, keisei_model_case.overrides)

    def test_forward_shapes_and_finite(self, keisei_model: Model) -> None:
        actions = model_shapes(keisei_model).num_actions

        def check(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
            obs, _ = batch
            with torch.no_grad():
                raw = keisei_model(obs)
            check_declared_heads(keisei_model, raw, obs.shape[0])
            logits, value = raw[:2]
            size = obs.shape[0]
            assert tuple(logits.shape) == (size, actions), f"logits {tuple(logits.shape)}, expected {(size, actions)}"
            assert tuple(value.shape) == (size,), f"value {tuple(value.shape)}, expected ({size},)"
            assert logits.is_floating_point() and value.is_floating_point()
            assert bool(torch.isfinite(logits).all()), "non-finite policy logits"
            assert bool(torch.isfinite(value).all()), "non-finite values"

        run_examples(self.batches(keisei_model), check, self.max_examples)

    def test_masks_are_honoured(self, keisei_model: Model) -> None:
        """Illegal actions get probability 0 (the legal ones sum to 1), deterministic acting
        picks the best legal action, and entropy is at most log(#legal)."""

        def check(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
            obs, masks = batch
            with torch.no_grad():
                logits = keisei_model(obs)[0]
                action, _, _ = keisei_model.get_action_and_value(obs, masks, deterministic=True)
                assert bool(masks.gather(1, action.unsqueeze(1)).all()), "deterministic action is illegal"
                best = logits.float().masked_fill(~masks, float("-inf")).max(dim=1).values
                chosen = logits.float().gather(1, action.unsqueeze(1)).squeeze(1)
                assert torch.equal(chosen, best), "deterministic action is not the best legal one"
                counts = masks.sum(dim=1)
                legal = [torch.nonzero(row).flatten() for row in masks]
                total = torch.zeros(obs.shape[0], dtype=torch.float64)
                entropy = None
                # One call per k (not one call on the batch repeated k times): rows of some
                # models interact (capacity-limited expert routing depends on the batch).
                for k in range(int(counts.max())):
                    pick = torch.stack([idx[min(k, len(idx) - 1)] for idx in legal])
                    log_prob, entropy, _ = keisei_model.evaluate_actions(obs, pick, masks)
                    chosen_prob = log_prob.double().exp()
                    total += torch.where(counts > k, chosen_prob, torch.zeros_like(chosen_prob)).cpu()
            torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-4,
                                       msg=lambda d: f"probabilities of the legal actions do not sum to 1: {d}")
            assert entropy is not None
            bound = torch.log(counts.double()).to(entropy.device) + 1e-4
            assert bool((entropy.double() <= bound).all()), "entropy exceeds log(number of legal actions)"

        run_examples(self.batches(keisei_model, max_legal=6), check, self.max_examples)

    def test_sampled_actions_are_legal(self, keisei_model: Model) -> None:
        def check(example: tuple[tuple[torch.Tensor, torch.Tensor], int]) -> None:
            (obs, masks), seed = example
            torch.manual_seed(seed)
            with torch.no_grad():
                action, log_prob, value = keisei_model.get_action_and_value(obs, masks)
            assert action.dtype == torch.long and tuple(action.shape) == (obs.shape[0],)
            assert bool(masks.gather(1, action.unsqueeze(1)).all()), "sampled an illegal action"
            assert bool(torch.isfinite(log_prob).all()) and bool((log_prob <= 1e-6).all())
            assert tuple(value.shape) == (obs.shape[0],) and bool(torch.isfinite(value).all())

        run_examples(st.tuples(self.batches(keisei_model), ks.seeds()), check, self.max_examples)

    def test_evaluate_actions_agrees_with_acting(self, keisei_model: Model) -> None:
        def check(example: tuple[tuple[torch.Tensor, torch.Tensor], bool, int]) -> None:
            (obs, masks), deterministic, seed = example
            torch.manual_seed(seed)
            with torch.no_grad():
                action, log_prob, value = keisei_model.get_action_and_value(obs, masks, deterministic=deterministic)
                log_prob2, entropy, value2 = keisei_model.evaluate_actions(obs, action, masks)
            torch.testing.assert_close(log_prob2, log_prob, msg=lambda d: f"log_prob disagrees: {d}")
            torch.testing.assert_close(value2, value, msg=lambda d: f"value disagrees: {d}")
            assert bool(torch.isfinite(entropy).all()) and bool((entropy >= -1e-6).all())
            single = masks.sum(dim=1) == 1
            if bool(single.any()):
                torch.testing.assert_close(log_prob2[single], torch.zeros_like(log_prob2[single]), rtol=0, atol=1e-5)
                torch.testing.assert_close(entropy[single], torch.zeros_like(entropy[single]), rtol=0, atol=1e-5)

        run_examples(st.tuples(self.batches(keisei_model), st.booleans(), ks.seeds()), check, self.max_examples)

    def test_every_parameter_receives_a_gradient(
        self, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase
    ) -> None:
        """A PPO-style loss through ``evaluate_actions`` reaches every trainable parameter
        (summed over ``gradient_steps`` batches, so routed layers get their chance)."""
        model = self.build(keisei_contract_host, keisei_model_case).train()
        size = max(2, self.batch_size)  # batch norm needs two samples in train mode
        for step in range(self.gradient_steps):
            obs, masks = self.fixed_batch(model, size, seed=step)
            with torch.no_grad():
                torch.manual_seed(step)
                action, _, _ = model.get_action_and_value(obs, masks)
            log_prob, entropy, value = model.evaluate_actions(obs, action, masks)
            loss = -log_prob.mean() - 0.01 * entropy.mean() + 0.5 * value.float().pow(2).mean()
            heads_loss = head_training_loss(model, model(obs))  # W/D/L and score heads, if any
            (loss if heads_loss is None else loss + heads_loss).backward()
        missing = [
            name
            for name, p in model.named_parameters()
            if p.requires_grad and p.grad is None and not any(fnmatch.fnmatchcase(name, pat) for pat in self.no_gradient_ok)
        ]
        assert not missing, f"{len(missing)} parameter(s) received no gradient: {missing[:8]}"
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        assert not bad, f"non-finite gradients in {bad[:8]}"
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()), "every gradient is zero"

    def test_state_dict_round_trip(self, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase) -> None:
        source = self._trained_once(keisei_contract_host, keisei_model_case)
        target = self.build(keisei_contract_host, keisei_model_case, seed=1)
        state = source.state_dict()
        assert not [k for k in state if "_orig_mod" in k], "state_dict keys carry torch.compile's _orig_mod prefix"
        assert list(target.state_dict()) == list(state), "two builds of the same options have different state_dict keys"
        differs = any(not torch.equal(a, b) for a, b in zip(state.values(), target.state_dict().values(), strict=True))
        assert differs, "builds from seeds 0 and 1 have identical weights: is the initialisation random?"
        target.load_state_dict(state, strict=True)
        self._assert_same_outputs(source, target, "model loaded from the state_dict")

    def test_checkpoint_round_trip(
        self, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase, tmp_path: Path
    ) -> None:
        """A keisei checkpoint (``save_checkpoint``) rebuilds the model from its recorded
        name and options and gives the same outputs; checkpoint files in Keisei's forms
        (bare state_dict, ``model_state_dict`` wrapper) load into a fresh build."""
        from keisei_core.checkpoints import load_weights
        from keisei_core.checkpoints.store import load_checkpoint, save_checkpoint

        source = self._trained_once(keisei_contract_host, keisei_model_case)
        saved = save_checkpoint(tmp_path / "keisei.pt", source, host=keisei_contract_host)
        loaded = load_checkpoint(saved, host=keisei_contract_host, map_location=self.device)
        assert loaded.model_name == keisei_model_case.name
        self._assert_same_outputs(source, loaded.model.to(self.device), "model rebuilt by load_checkpoint")
        forms = {"bare.pt": source.state_dict(), "wrapped.pt": {"model_state_dict": source.state_dict(), "step": 7}}
        for file, payload in forms.items():
            torch.save(payload, tmp_path / file)
            target = self.build(keisei_contract_host, keisei_model_case, seed=1)
            load_weights(target, tmp_path / file)
            self._assert_same_outputs(source, target, f"model loaded from checkpoint {file}")

    def test_deterministic_under_seed(self, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase) -> None:
        first = self.build(keisei_contract_host, keisei_model_case, seed=3)
        second = self.build(keisei_contract_host, keisei_model_case, seed=3)
        for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
            assert torch.equal(a, b), f"'{name}' differs between two builds from the same seed"
        obs, masks = self.fixed_batch(first, self.batch_size, seed=4)
        with torch.no_grad():
            torch.manual_seed(5)
            action_a, log_prob_a, value_a = first.get_action_and_value(obs, masks)
            torch.manual_seed(5)
            action_b, log_prob_b, value_b = second.get_action_and_value(obs, masks)
        assert torch.equal(action_a, action_b), "sampled actions differ under the same seed"
        assert torch.equal(log_prob_a, log_prob_b) and torch.equal(value_a, value_b)

    def test_equivalent_under_strategy(
        self, keisei_contract_host: PluginHost, keisei_model_case: c.ModelCase, keisei_strategy_name: str
    ) -> None:
        outcome = c.compiled(
            keisei_contract_host, keisei_model_case, keisei_strategy_name, device=self.device,
            batch_sizes=self.compile_batch_sizes or (1, self.batch_size),
        )
        if outcome.status == CompileStatus.SKIPPED or c.declined(outcome):
            pytest.skip(f"'{keisei_strategy_name}' does not apply to {keisei_model_case.id}: {outcome.reason}")
        if outcome.status != CompileStatus.COMPILED and not self.allow_fallback:
            pytest.fail(
                f"strategy '{keisei_strategy_name}' did not compile {keisei_model_case.id}: "
                f"status {outcome.status}: {outcome.reason}"
            )
        check_equivalence(keisei_contract_host, keisei_strategy_name, outcome, batch_size=self.batch_size, device=self.device)

    # -- helpers --------------------------------------------------------------------------
    def _trained_once(self, host: PluginHost, case: c.ModelCase) -> Model:
        """A build whose buffers (e.g. batch-norm statistics) moved away from their initial
        values, so a round trip that drops buffers is caught."""
        model = self.build(host, case).train()
        obs, _ = self.fixed_batch(model, max(2, self.batch_size), seed=11)
        with torch.no_grad():
            model(obs)
        return model.eval()

    def _assert_same_outputs(self, expected: Model, actual: Model, what: str) -> None:
        obs, _ = self.fixed_batch(expected, self.batch_size, seed=12)
        with torch.no_grad():
            want = read_outputs(expected, expected(obs)).heads()
            got = read_outputs(actual, actual.eval()(obs)).heads()
        assert list(got) == list(want), f"{what}: heads {list(got)} differ from the original's {list(want)}"
        for name in want:
            torch.testing.assert_close(got[name], want[name], msg=f"{what}: {name} differ from the original's")


def check_declared_heads(model: nn.Module, raw: Any, batch: int) -> None:
    """``forward`` returns the PPO pair and then exactly the heads the model declares, each
    finite and shaped as :mod:`keisei_core.heads` says; a W/D/L model's value is P(W) - P(L)."""
    heads = output_heads(model)
    assert isinstance(raw, tuple) and all(isinstance(t, torch.Tensor) for t in raw), (
        "forward must return a tuple of tensors (policy_logits, value, *declared heads)"
    )
    extra = extra_outputs(model, raw)
    shapes = {"value_wdl": (batch, 3), "score": (batch,)}
    for name, tensor in extra.items():
        assert tuple(tensor.shape) == shapes[name], f"{name} head {tuple(tensor.shape)}, expected {shapes[name]}"
        assert bool(torch.isfinite(tensor).all()), f"non-finite {name} head"
    if heads.value_kind == VALUE_WDL:
        torch.testing.assert_close(
            raw[1].reshape(-1), scalar_value_from_wdl(extra["value_wdl"]),
            msg=lambda d: f"the value of a W/D/L model must be P(W) - P(L) of its value_wdl logits: {d}",
        )


def _check_policy(
    strategy: str, specs: list[Any], outcome: c.CompileOutcome, *, batch_size: int, device: str
) -> None:
    """Quantized strategies: the policy-level checks (keisei_core.compile.policy_checks)
    on a fresh input, against the precision's thresholds."""
    from keisei_core.compile.equivalence import make_check_inputs
    from keisei_core.compile.policy_checks import resolve_policy_thresholds, run_policy_checks

    precision = next(s.precision for s in specs if is_quantized(s.precision))
    eager, model = outcome.eager.eval(), outcome.model
    shapes = model_shapes(eager)
    inputs = make_check_inputs((batch_size,), shapes.observation, shapes.num_actions, device=device, dtype=torch.float32, seed=102)
    thresholds = resolve_policy_thresholds(precision)
    missed = [c.describe() for c in run_policy_checks(eager, model, inputs, precision=precision, thresholds=thresholds) if not c.passed]
    assert not missed, f"'{strategy}' misses the {precision} policy thresholds on a fresh input: {'; '.join(missed)}"


def check_equivalence(
    host: PluginHost, strategy: str, outcome: c.CompileOutcome, *, batch_size: int, device: str
) -> None:
    """Compare a strategy's model with eager on a fresh input (a seed the compile's own
    validation never saw) at ``batch_size``: forward outputs, ``evaluate_actions`` of
    eager's best legal actions, and (float32 strategies) the deterministic actions
    themselves where eager's choice is not a near tie. State_dict keys must be eager's.
    (``compile_model`` already validated batch 1 and ``batch_size`` on its own inputs.)"""
    specs = list(outcome.composition.parts)
    if any(is_quantized(s.precision) for s in specs):
        _check_policy(strategy, specs, outcome, batch_size=batch_size, device=device)
        return
    tolerance = tolerance_for(specs)
    eager, model = outcome.eager.eval(), outcome.model
    if hasattr(model, "eval"):
        model.eval()
    if outcome.status == CompileStatus.COMPILED and hasattr(model, "state_dict"):
        keys = [k.replace("_orig_mod.", "") for k in model.state_dict()]
        assert sorted(keys) == sorted(eager.state_dict()), (
            f"'{strategy}' changed the state_dict keys, so checkpoints would not load into eager models"
        )
    shapes = model_shapes(eager)
    for size, seed in ((batch_size, 102),):
        obs = observations_for(eager, size, seed=seed, device=device)
        masks = legal_masks_for(eager, size, seed=seed, device=device)
        with torch.no_grad():
            want_raw, got_raw = eager(obs), model(obs)
            want_logits, want_value = want_raw[:2]
            got_logits, got_value = got_raw[:2]
            assert_close(got_logits, want_logits, tolerance, f"'{strategy}' policy logits (batch {size})")
            assert_close(got_value.reshape(-1), want_value, tolerance, f"'{strategy}' value (batch {size})")
            got_heads = extra_outputs(eager, got_raw)
            for head, want_head in extra_outputs(eager, want_raw).items():
                assert_close(got_heads[head], want_head, tolerance, f"'{strategy}' {head} head (batch {size})")
            action, want_log_prob, _ = eager.get_action_and_value(obs, masks, deterministic=True)
            got_log_prob, _, got_value2 = model.evaluate_actions(obs, action, masks)
            assert_close(got_log_prob, want_log_prob, tolerance, f"'{strategy}' evaluate_actions log_prob (batch {size})")
            assert_close(got_value2, want_value.float(), tolerance, f"'{strategy}' evaluate_actions value (batch {size})")
            if tolerance.dtype == "float32":
                got_action, _, _ = model.get_action_and_value(obs, masks, deterministic=True)
                top2 = want_logits.float().masked_fill(~masks, -math.inf).topk(min(2, shapes.num_actions), dim=1).values
                gap = (top2[:, 0] - top2[:, -1]) if top2.shape[1] > 1 else torch.full((size,), math.inf, device=top2.device)
                bound = tolerance.atol + tolerance.rtol * float(want_logits.abs().max())
                clear = (gap > 10 * bound) | (masks.sum(dim=1) == 1)
                assert torch.equal(got_action[clear], action[clear]), (
                    f"'{strategy}' picks other deterministic actions than eager (batch {size})"
                )
