"""Issue 16: configs that would crash later are one ConfigError line when read or checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from keisei_core.bench.checks import check_names
from keisei_core.cli.main import main
from keisei_core.config import load_experiment
from keisei_core.errors import ConfigError, KeiseiError
from keisei_core.plugins import get_host


@pytest.mark.parametrize("kind", ["array", "table", "mixed"])
def test_deeply_nested_values_are_one_error(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    depth = 400
    value = {"array": "[" * depth + "]" * depth, "table": "{a = " * depth + "1" + "}" * depth,
             "mixed": "[{a = " * (depth // 2) + "1" + "}]" * (depth // 2)}[kind]
    path = tmp_path / "deep.toml"
    path.write_text(f'name = "x"\n[probe_options.latency]\nv = {value}\n')
    with pytest.raises(ConfigError, match=r"nested more than 32 levels deep"):
        load_experiment(path)
    assert main(["config", "show", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested more than 32 levels" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_experiment(None, [f"probe_options.latency.v={value}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bench.time_budget_seconds=inf", r"bench.time_budget_seconds: must be a finite number > 0 and <= 86400 \(got inf\)"),
        ("bench.time_budget_seconds=nan", r"bench.time_budget_seconds: must be a finite number"),
        ("bench.warmup_seconds=inf", r"bench.warmup_seconds: must be a finite number >= 0"),
        ("bench.target_iqr_ratio=inf", r"bench.target_iqr_ratio: must be a finite number"),
        ("bench.threads=100000000000", r"bench.threads: must be <= 4096 \(got 100000000000\)"),
        ("bench.max_samples=100000000000", r"bench.max_samples: must be <= 10000000"),
        ("batch_sizes=[1, 100000000000000000000000]", r"batch_sizes: must hold integers <= 1048576 \(got \[100000000000000000000000\]\)"),
        ("batch_sizes=[1e23]", r"batch_sizes\[0\]: expected an integer, got 1e\+23"),
        ("seed=100000000000000000000000", r"seed: must be <= 4611686018427387903"),
        ("seed=1e23", r"seed: expected an integer"),
        ("seed=-1", r"seed: must be >= 0"),
    ],
)
def test_out_of_range_settings_are_refused_at_config_time(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment(None, [override])


def test_min_samples_above_max_samples_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[bench]\nmin_samples = 50\nmax_samples = 3\n")
    with pytest.raises(ConfigError, match=r"bench.max_samples: must be >= min_samples \(50\) \(got 3\)"):
        load_experiment(path)


def test_model_too_big_for_memory_is_refused_when_checked() -> None:
    config = load_experiment(None, ['models=[{name = "actor-critic", options = {conv_channels = 1000000000000}}]'])
    with pytest.raises(ConfigError, match=r"models\[0\]: model 'actor-critic' would need .* PiB for its weights, more than this machine's"):
        check_names(config, get_host(), "c.toml")


@pytest.mark.parametrize("name", ["../../../escaped", "a/b", "..", ".hidden", "-rf", "x\x1b[2J", "back\\slash", "trailing. "])
def test_run_names_that_are_not_one_folder_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="name: must be a plain folder name") as info:
        load_experiment(None, [f'name="{name}"'.replace("\\", "\\\\").replace("\x1b", "\\u001b")])
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_plain_run_names_still_pass() -> None:
    for name in ("quick run", "keisei-cpu", "restower.v2+bf16", "run_01"):
        assert load_experiment(None, [f'name="{name}"']).name == name


def test_bench_refuses_an_escaping_name_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text('name = "../../escaped"\noutput_dir = "out/inner"\n')
    assert main(["bench", "c.toml", "--no-progress", "--wandb", "disabled"]) == 2
    assert "name: must be a plain folder name" in capsys.readouterr().err
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*"))


def test_probe_options_are_checked_against_the_probe() -> None:
    host = get_host()
    config = load_experiment(None, ["probe_options.latency.bogus=1"])
    with pytest.raises(ConfigError, match=r"probe_options.latency: probe 'latency' takes no options \(got bogus\)"):
        check_names(config, host, "c.toml")
    config = load_experiment(None, ["probe_options.train-step-ddp.world_sise=2"])
    with pytest.raises(ConfigError, match=r"c.toml: probe_options.train-step-ddp: unknown key\(s\) world_sise"):
        check_names(config, host, "c.toml")
    config = load_experiment(None, ["probe_options.train-step-ddp.world_size=0"])
    with pytest.raises(ConfigError, match=r"probe_options.train-step-ddp.world_size: must be >= 1"):
        check_names(config, host, "c.toml")
    check_names(load_experiment(None, ["probe_options.train-step-ddp.world_size=2"]), host, "c.toml")


def test_control_characters_in_names_are_escaped_in_error_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from keisei_core.errors import escape_controls

    hostile = "rest\x1b[2J\x1b[Hower\r\nfake line\x07"
    assert main(["info", hostile]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "\x07" not in err and err.count("\n") == 1
    assert "rest\\x1b[2J\\x1b[Hower\\r\\nfake line\\x07" in err
    assert escape_controls("a\x9bb\tc") == "a\\x9bb\\tc"
    assert str(KeiseiError("x\x1by")) == "x\\x1by"
    with pytest.raises(KeiseiError) as info:
        check_names(load_experiment(None, ['probes=["lat\\u001b[31mency"]']), get_host(), "c.toml")
    assert "\x1b" not in str(info.value) and "\\x1b[31m" in str(info.value)
