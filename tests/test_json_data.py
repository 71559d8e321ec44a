"""The one JSON sanitiser (keisei_core.json_data.json_safe): strict JSON out, non-finite
numbers as text (reports) or as null with where each one was (results files)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keisei_core.json_data import json_safe

_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_data = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)


def _non_finite(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return sum(_non_finite(v) for v in value)
    return int(isinstance(value, float) and not math.isfinite(value))


@given(_data, st.sampled_from(["text", "null"]))
def test_the_result_is_strict_json_and_every_non_finite_number_is_listed(value: Any, mode: str) -> None:
    replaced: list[str] = []
    safe = json_safe(value, non_finite=mode, replaced=replaced)
    json.dumps(safe, allow_nan=False)
    assert len(replaced) == _non_finite(value)
    if _non_finite(value) == 0:
        assert safe == value  # finite JSON data passes through unchanged


def test_non_finite_numbers_become_text_or_null_with_their_path() -> None:
    data = {"a": [1.0, math.inf], "b": {"c": -math.inf}, "d": (1, 2), "e": object}
    assert json_safe(data)["a"] == [1.0, "inf"] and json_safe(data)["d"] == [1, 2]
    replaced: list[str] = []
    nulls = json_safe(data, non_finite="null", replaced=replaced, path="cells[0]")
    assert nulls["a"] == [1.0, None] and nulls["b"] == {"c": None}
    assert replaced == ["cells[0].a[1]: inf written as null", "cells[0].b.c: -inf written as null"]
    assert nulls["e"] == str(object)
    with pytest.raises(ValueError, match="non_finite must be"):
        json_safe(data, non_finite="zero")
