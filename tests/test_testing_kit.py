"""The plugin author's kit itself: strategies, option shrinking, sizing, pytest plugin.

The contract suites are tested in tests/test_testing_kit_contracts.py (they must pass
good plugins and fail broken ones).
"""

from __future__ import annotations

from typing import Literal

import attrs
import pytest
import torch
from attrs import validators as v
from hypothesis import find, given, settings
from hypothesis import strategies as st

from keisei_core.models import resolve_options
from keisei_core.observations import PlaneLayout
from keisei_core.plugins import get_host
from keisei_core.specs import ModelSpec
from keisei_core.testing import strategies as ks
from keisei_core.testing.cases import ModelCase, covering_pairs, matches
from keisei_core.testing.options import SMALL_INT, field_rules, int_range, shrunk_options
from keisei_core.testing.sizing import MAX_CONTRACT_FLOPS, contract_options


# -- observations and masks ---------------------------------------------------------------
@settings(max_examples=40)
@given(
    obs=ks.observations(
        batch_size=st.integers(1, 3), channels=st.integers(1, 60), board_size=st.integers(1, 11)
    )
)
def test_observations_have_the_real_plane_structure(obs: torch.Tensor) -> None:
    _, channels, board, width = obs.shape
    assert board == width and obs.dtype == torch.float32
    layout = PlaneLayout.for_channels(channels)
    pieces = obs[:, : layout.pieces]
    assert bool(((pieces == 0) | (pieces == 1)).all()), "piece planes are one-hot"
    assert bool((pieces.sum(dim=1) <= 1).all()), "at most one piece per square"
    flat = obs.flatten(2)
    constant = (flat.amax(dim=2) == flat.amin(dim=2)).all(dim=0)
    hands = slice(layout.pieces, layout.pieces + layout.hands)
    assert bool(constant[hands].all()) and bool(((flat[:, hands] >= 0) & (flat[:, hands] <= 1)).all())
    if layout.side_to_move is not None:
        side = flat[:, layout.side_to_move]
        assert bool(constant[layout.side_to_move]) and set(side.unique().tolist()) <= {0.0, 1.0}
    if layout.move_count is not None:
        assert bool(constant[layout.move_count]) and bool((flat[:, layout.move_count] < 1).all())
    used = layout.pieces + layout.hands + (layout.side_to_move is not None) + (layout.move_count is not None)
    assert bool((flat[:, used:] == 0).all()), "the remaining planes are zero"


@settings(max_examples=40)
@given(actions=st.integers(1, 300), low=st.integers(1, 5), width=st.integers(0, 5), data=st.data())
def test_legal_masks_respect_their_bounds(actions: int, low: int, width: int, data: st.DataObject) -> None:
    high = low + width
    masks = data.draw(ks.legal_masks(num_actions=actions, batch_size=3, min_legal=low, max_legal=high))
    assert masks.dtype == torch.bool and tuple(masks.shape) == (3, actions)
    counts = masks.sum(dim=1)
    assert bool((counts >= min(low, actions)).all()) and bool((counts <= min(high, actions)).all())


def test_legal_masks_reach_one_legal_action_and_all_legal() -> None:
    single = find(ks.legal_masks(num_actions=50, batch_size=1), lambda m: int(m.sum()) == 1)
    every = find(ks.legal_masks(num_actions=50, batch_size=1), lambda m: bool(m.all()))
    assert int(single.sum()) == 1 and bool(every.all())


@settings(max_examples=20)
@given(batch=ks.observation_batches(channels=7, board_size=5, num_actions=40, batch_size=st.integers(1, 4)))
def test_observation_batches_agree_on_the_batch_size(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    obs, masks = batch
    assert obs.shape[0] == masks.shape[0] and tuple(obs.shape[1:]) == (7, 5, 5)
    assert bool(masks.any(dim=1).all())


# -- option sets ---------------------------------------------------------------------------
@attrs.frozen
class DemoOptions:
    input_channels: int = attrs.field(default=46, validator=v.ge(1))
    width: int = attrs.field(default=256, validator=[v.ge(4), v.le(1024)])
    heads: int = attrs.field(default=4, validator=v.ge(1))
    ratio: float = attrs.field(default=0.25, validator=[v.ge(0.0), v.lt(1.0)])
    kind: str = attrs.field(default="se", validator=v.in_(("se", "film")))
    mode: Literal["a", "b"] = "a"
    radius: int | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(3)]))
    flag: bool = False
    label: str = "demo"

    def __attrs_post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"'width' ({self.width}) must be a multiple of 'heads' ({self.heads})")


def _demo_spec(**defaults: object) -> ModelSpec:
    return ModelSpec(name="demo", build=lambda options: torch.nn.Identity(), options=DemoOptions, defaults=defaults)


def test_field_rules_read_types_and_validators() -> None:
    rules = {rule.name: rule for rule in field_rules(DemoOptions, {"width": 64})}
    assert rules["width"].kind == "int" and rules["width"].default == 64
    assert int_range(rules["width"]) == (4, 1024)
    assert rules["ratio"].kind == "float" and (rules["ratio"].high, rules["ratio"].high_open) == (1.0, True)
    assert rules["kind"].choices == ("se", "film")
    assert rules["mode"].choices == ("a", "b") and rules["mode"].kind == "str"
    assert rules["radius"].optional and int_range(rules["radius"]) == (0, 3)
    assert rules["flag"].kind == "bool" and rules["label"].kind == "str"


@settings(max_examples=40)
@given(options=ks.model_options(_demo_spec(), fixed={"label": "pinned"}))
def test_drawn_options_are_valid_and_small(options: dict[str, object]) -> None:
    spec = _demo_spec()
    resolved = resolve_options(spec, options)  # validators and the cross-field rule hold
    assert "input_channels" not in options, "shape options stay at the preset"
    assert options["label"] == "pinned"
    assert 4 <= resolved.width <= SMALL_INT and resolved.width % resolved.heads == 0
    assert 0.0 <= resolved.ratio < 1.0 and resolved.kind in ("se", "film") and resolved.mode in ("a", "b")
    assert resolved.radius is None or 0 <= resolved.radius <= 3


def test_drawn_options_cover_choices_and_none() -> None:
    strategy = ks.model_options(_demo_spec())
    assert find(strategy, lambda o: o["kind"] == "film" and o["mode"] == "b")["kind"] == "film"
    assert find(strategy, lambda o: o["radius"] is None)["radius"] is None


@pytest.mark.parametrize("name", sorted(get_host().models.names()))
@settings(max_examples=3)
@given(data=st.data())
def test_drawn_options_build_every_registered_model(name: str, data: st.DataObject) -> None:
    from keisei_core.introspect import model_shapes
    from keisei_core.models import build_from_spec
    from keisei_core.observations import make_observations

    spec = get_host().models.get(name)
    options = data.draw(ks.model_options(spec, fixed={"num_actions": 32}), label="options")
    model = build_from_spec(spec, resolve_options(spec, options)).eval()
    shapes = model_shapes(model)
    channels, board, _ = shapes.observation
    with torch.no_grad():
        logits, value = model(make_observations(2, channels, board))[:2]  # multi-head: more after
    # Models whose action space is fixed (Keisei 2026's 11,259) have no num_actions option.
    takes_actions = "num_actions" in attrs.fields_dict(spec.options)
    assert tuple(logits.shape) == (2, 32 if takes_actions else shapes.num_actions) and tuple(value.shape) == (2,)


def test_shrinking_respects_cross_field_rules() -> None:
    assert shrunk_options(_demo_spec()) == {"width": 8}
    # heads=16 rules out widths 8, 4 and 2; 16 is the first cap the class accepts.
    assert shrunk_options(_demo_spec(heads=16)) == {"width": 16, "heads": 8}
    assert shrunk_options(_demo_spec(width=6, heads=3)) == {}  # already small: kept


def test_meta_device_sizing_is_exact_and_cheap() -> None:
    spec = get_host().models.get("actor-critic")
    chosen = contract_options(spec)
    cost = chosen.cost
    # Keisei's baseline at 46 x 9 x 9 -> 13,527 (shared/reference/KEISEI-MODELS.md).
    assert cost.parameters == 17_552_456
    assert cost.flops_per_sample is not None and cost.flops_per_sample < MAX_CONTRACT_FLOPS
    assert cost.ops_per_forward is not None and 4 <= cost.ops_per_forward <= 20  # conv, relu, 2 linears
    assert chosen.size == "preset" and chosen.overrides == {}
    shrunk = contract_options(spec, "shrunk")
    assert shrunk.size == "shrunk" and shrunk.overrides == {"conv_channels": 8}
    assert shrunk.cost.parameters < cost.parameters


def test_expensive_presets_are_shrunk() -> None:
    from keisei_core.builtin.models import ActorCriticOptions, build_actor_critic

    wide = ModelSpec(name="wide", build=build_actor_critic, options=ActorCriticOptions, defaults={"conv_channels": 4096})
    chosen = contract_options(wide)
    assert chosen.size == "shrunk" and chosen.overrides == {"conv_channels": 8}
    with pytest.raises(ValueError, match="auto, preset or shrunk"):
        contract_options(wide, "tiny")


# -- planning the model x strategy matrix --------------------------------------------------
def test_covering_pairs_meet_every_family_and_strategy() -> None:
    models = [(ModelCase("a1"), "a"), (ModelCase("a2"), "a"), (ModelCase("b1"), "b"), (ModelCase("solo"), None)]
    pairs = covering_pairs(models, ["s1", "s2", "s3", "s4", "s5"])
    assert len(pairs) == 5
    assert {name for _, name in pairs} == {"s1", "s2", "s3", "s4", "s5"}
    assert {case.name for case, _ in pairs} == {"a1", "b1", "solo"}  # first case of each family
    assert covering_pairs(models, []) == []


def test_matrix_plan_levels() -> None:
    from keisei_core.specs import StrategySpec
    from keisei_core.testing.cases import SizedCase, matrix_plan

    def strategy(name: str, kind: str) -> StrategySpec:
        return StrategySpec(name=name, apply=lambda model, context: model, kind=kind, baseline=name == "eager")

    strategies = [strategy("eager", "compiler"), strategy("t1", "transform"), strategy("c1", "compiler"), strategy("c2", "compiler")]
    models = [
        SizedCase(ModelCase("big"), "x", 10, 500),
        SizedCase(ModelCase("small"), "x", 10, 20),
        SizedCase(ModelCase("other"), "y", 10, 90),
    ]
    cheap = {(m.case.name, s) for m in models for s in ("eager", "t1")}

    def names(pairs: list[tuple[ModelCase, str]]) -> set[tuple[str, str]]:
        return {(case.name, s) for case, s in pairs}

    assert names(matrix_plan(models, strategies)) == cheap | {("small", "c1"), ("small", "c2")}
    assert names(matrix_plan(models, strategies, "families")) == cheap | {("big", "c1"), ("other", "c2")}
    assert names(matrix_plan(models, strategies, "full")) == cheap | {(m.case.name, c) for m in models for c in ("c1", "c2")}
    with pytest.raises(ValueError, match="matrix level"):
        matrix_plan(models, strategies, "everything")


def test_name_patterns() -> None:
    assert matches("restower-film", "restower*") and matches("eager", "x, eager")
    assert not matches("eager", None) and not matches("eager", "")


# -- the pytest plugin ---------------------------------------------------------------------
def test_fixtures_give_fresh_hosts_and_models(keisei_host, keisei_host_factory, keisei_build) -> None:  # type: ignore[no-untyped-def]
    assert "actor-critic" in keisei_host.models and keisei_host is not get_host()
    only_builtins = keisei_host_factory(env={"KEISEI_PLUGINS": ""})
    assert only_builtins.models.names() == ["actor-critic"]
    model = keisei_build("actor-critic", conv_channels=2, num_actions=10)
    assert not model.training and model.keisei_model_options["conv_channels"] == 2


def test_options_are_registered(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.getoption("keisei_size") == "auto"
    assert pytestconfig.getoption("keisei_matrix") == "compilers"
    assert pytestconfig.getoption("keisei_models") is None
