"""Typed configs: strict structuring, one-line errors, overrides, round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.config import (
    BenchSettings,
    ExperimentConfig,
    ModelEntry,
    WandbSettings,
    apply_overrides,
    converter,
    dump_toml,
    experiment_to_dict,
    load_experiment,
    structure,
)
from keisei_core.config.files import tomllib
from keisei_core.errors import ConfigError

names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
scalars = st.one_of(st.integers(-(2**31), 2**31), st.booleans(), st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False))

configs = st.builds(
    ExperimentConfig,
    name=names,
    description=st.text(max_size=20),
    plugins=st.lists(names, max_size=2),
    models=st.lists(
        st.builds(ModelEntry, name=names, options=st.dictionaries(names, scalars, max_size=3), label=st.none() | names),
        min_size=1,
        max_size=3,
    ),
    strategies=st.lists(names, min_size=1, max_size=3, unique=True),
    probes=st.lists(names, min_size=1, max_size=3, unique=True),
    batch_sizes=st.lists(st.integers(1, 4096), min_size=1, max_size=4, unique=True),
    device=st.sampled_from(["cpu", "cuda"]),
    dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
    seed=st.integers(0, 2**31),
    bench=st.builds(
        BenchSettings,
        warmup_seconds=st.floats(0, 10),
        min_samples=st.integers(3, 10),
        max_samples=st.integers(10, 1000),
        time_budget_seconds=st.floats(0.1, 100),
        threads=st.none() | st.integers(1, 64),
    ),
    wandb=st.builds(WandbSettings, mode=st.sampled_from(["offline", "online", "disabled"]), group=st.none() | names),
)


@settings(max_examples=80)
@given(config=configs)
def test_round_trip_structure_unstructure(config: ExperimentConfig) -> None:
    assert structure(converter.unstructure(config), ExperimentConfig, "round-trip") == config


@settings(max_examples=40)
@given(config=configs)
def test_round_trip_through_toml_text(config: ExperimentConfig) -> None:
    text = dump_toml(experiment_to_dict(config))
    assert structure(tomllib.loads(text), ExperimentConfig, "toml") == config


json_like = st.recursive(
    st.none() | scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
keys = st.sampled_from(
    ["name", "models", "strategies", "probes", "batch_sizes", "device", "dtype", "seed", "bench", "wandb", "plugins", "junk"]
)


@settings(max_examples=300)
@given(data=st.dictionaries(keys, json_like, max_size=6))
def test_garbage_configs_give_one_line_errors_never_tracebacks(data: dict[str, Any]) -> None:
    try:
        structure(data, ExperimentConfig, "garbage.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("garbage.toml: ")
        assert "\n" not in message
    # Any other exception type fails the test (it would reach the user as a traceback).


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("batch_sizes = [1, 'x']", "bad.toml: batch_sizes[1]: expected an integer, got 'x'"),
        ("batch_sizes = [0, 4]", "bad.toml: batch_sizes: must hold integers >= 1"),
        ("device = 'tpu'", "bad.toml: device:"),
        ("dtype = 'float64'", "bad.toml: dtype: must be one of 'float32', 'bfloat16', 'float16' (got 'float64')"),
        ("[bench]\nmin_samples = 1", "bad.toml: bench.min_samples: must be >= 3 (got 1)"),
        ("[bench]\ntypo = 1", "bad.toml: bench: unknown key(s) typo"),
        ("models = [{ name = 'x', optoins = {} }]", "bad.toml: models[0]: unknown key(s) optoins"),
        ("strategies = []", "bad.toml: strategies: must not be empty"),
        ("seed = true", "bad.toml: seed: expected an integer, got True"),
        ("name = ", "bad.toml: invalid TOML"),
        # a string must not be iterated into a list of its characters
        ("strategies = 'eager'", "bad.toml: strategies: expected a list, got 'eager'"),
        ("batch_sizes = 64", "bad.toml: batch_sizes: expected a list, got 64"),
    ],
)
def test_config_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, label="bad.toml")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_overrides_are_typed() -> None:
    data = apply_overrides(
        {"models": [{"name": "a"}]},
        ["batch_sizes=[1, 64]", "seed=3", "bench.time_budget_seconds=0.5", "name=quick run", "models.0.options.depth=2", "wandb.mode=disabled"],
    )
    assert data["batch_sizes"] == [1, 64]
    assert data["seed"] == 3
    assert data["bench"] == {"time_budget_seconds": 0.5}
    assert data["name"] == "quick run"
    assert data["models"][0]["options"] == {"depth": 2}
    config = structure(data, ExperimentConfig, "x")
    assert config.wandb.mode == "disabled"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("novalue", "expected KEY=VALUE"),
        ("models.3.name=x", "models.3 does not exist"),
        ("a b=1", "invalid key segment"),
        # what a shell leaves of --set strategies=["eager","inductor"] without single quotes
        ("strategies=[eager,inductor]", "not a valid TOML array or table.*strings inside need double quotes"),
        ("bench={threads=}", "not a valid TOML array or table"),
    ],
)
def test_bad_overrides(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides({"models": [{"name": "a"}]}, [item])


def test_relative_plugin_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "x.toml"
    path.write_text("plugins = ['my_models.py', 'some.module']")
    config = load_experiment(path)
    assert config.plugins == [str((tmp_path / "cfg" / "my_models.py").resolve()), "some.module"]


def test_config_show_cli(tmp_path: Path, run_cli: Any) -> None:
    path = tmp_path / "x.toml"
    path.write_text("name = 'demo'\nbatch_sizes = [2]\n")
    done = run_cli("config", "show", str(path), "--set", "seed=7")
    assert done.returncode == 0, done.stderr
    shown = tomllib.loads(done.stdout)
    assert shown["name"] == "demo" and shown["seed"] == 7 and shown["batch_sizes"] == [2]
    bad = run_cli("config", "show", str(path), "--set", "seed=abc")
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"keisei: error: {path}: seed: expected an integer, got 'abc'"
    unknown = run_cli("config", "show", str(path), "--check", "--set", "strategies=['eagr']")
    assert unknown.returncode == 2
    assert "unknown strategy 'eagr'; did you mean 'eager'?" in unknown.stderr
