"""Composed strategy names: parsing, the compiler-last rule, suggestions, support checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keisei_core.compile import (
    DEFAULT_TOLERANCES,
    CompositionError,
    Tolerance,
    parse_composition,
    resolve_tolerance,
    split_strategy,
)
from keisei_core.errors import InputError, UnknownNameError
from keisei_core.registry import Registration, Registry
from keisei_core.specs import StrategySpec


def _identity(model, context):  # type: ignore[no-untyped-def]
    return model


def _registry(*specs: StrategySpec) -> Registry[StrategySpec]:
    registry: Registry[StrategySpec] = Registry("strategy", StrategySpec)
    for spec in specs:
        registry.add(Registration(spec, "test"))
    return registry


SPECS = _registry(
    StrategySpec("channels-last", _identity, kind="transform"),
    StrategySpec("bf16", _identity, kind="transform", dtypes={"float32"}, precision="bfloat16"),
    StrategySpec("fp16", _identity, kind="transform", devices={"cuda"}, dtypes={"float32"}, precision="float16"),
    StrategySpec("inductor", _identity),
    StrategySpec("frozen", _identity, devices={"cpu"}, training=False),
    StrategySpec("eager", _identity),
)


def test_parts_in_order_with_combined_support() -> None:
    composition = parse_composition("channels-last + bf16+inductor", SPECS)
    assert composition.names == ("channels-last", "bf16", "inductor")
    assert composition.name == "channels-last+bf16+inductor"
    assert composition.precision == "bfloat16"
    assert composition.dtypes == {"float32"}
    assert composition.devices == {"cpu", "cuda"}
    assert composition.training


def test_support_is_the_intersection_and_reasons_name_the_part() -> None:
    composition = parse_composition("fp16+frozen", SPECS)
    assert composition.devices == frozenset()
    assert "'fp16' runs on cuda only, not cpu" in (composition.unsupported_reason("cpu", "float32") or "")
    assert "'frozen' runs on cpu only, not cuda" in (composition.unsupported_reason("cuda", "float32") or "")
    bf16 = parse_composition("bf16", SPECS)
    assert "'bf16' supports float32 models only, not bfloat16" in (bf16.unsupported_reason("cpu", "bfloat16") or "")
    frozen = parse_composition("frozen", SPECS)
    assert frozen.unsupported_reason("cpu", "float32") is None
    assert "inference only" in (frozen.unsupported_reason("cpu", "float32", training=True) or "")
    assert not frozen.training


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("inductor+bf16", "compiler 'inductor' must come last (transforms first, e.g. bf16+inductor)"),
        ("eager+inductor", "has 2 compilers (eager, inductor)"),
        ("bf16+bf16", "names 'bf16' twice"),
        ("bf16+fp16", "mixes precisions bfloat16, float16"),
        ("bf16++inductor", "empty part"),
        ("+inductor", "empty part"),
        ("  ", "non-empty name"),
    ],
)
def test_rule_violations_are_one_line_errors(name: str, message: str) -> None:
    with pytest.raises(CompositionError) as info:
        parse_composition(name, SPECS)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_part_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNameError, match=r"in 'chanels-last\+inductor': unknown strategy 'chanels-last'; did you mean 'channels-last'\?"):
        parse_composition("chanels-last+inductor", SPECS)
    with pytest.raises(UnknownNameError, match=r"^unknown strategy 'inductr'; did you mean 'inductor'\?"):
        parse_composition("inductr", SPECS)


def test_split_strips_spaces() -> None:
    assert split_strategy(" a+ b +c ") == ["a", "b", "c"]


def test_tolerances_by_precision_and_override() -> None:
    assert resolve_tolerance("float32") == DEFAULT_TOLERANCES["float32"]
    assert resolve_tolerance("bfloat16").atol > resolve_tolerance("float16").atol > resolve_tolerance("float32").atol
    one = Tolerance(atol=1.0, rtol=0.5)
    assert resolve_tolerance("float16", one) is one
    assert resolve_tolerance("bfloat16", {"bfloat16": one}) is one
    assert resolve_tolerance("float32", {"bfloat16": one}) == DEFAULT_TOLERANCES["float32"]
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_tolerance("float32", {"fp8": one})
    with pytest.raises(ValueError):
        Tolerance(atol=-1.0, rtol=0.0)


def test_parsing_and_reports_do_not_import_torch() -> None:
    code = (
        "import sys, keisei_core.compile as c; "
        "from keisei_core import CompileReport; "
        "c.split_strategy('a+b'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
