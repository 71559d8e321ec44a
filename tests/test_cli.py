"""The CLI around the registries: listings, info, exit codes, JSON on stdout alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keisei_core.cli.main import main

REFERENCE = Path(__file__).parent / "data" / "actor-critic-baseline.state_dict.txt"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("command", ["models", "strategies", "probes", "plugins"])
def test_json_listings_are_lists_of_named_objects(capsys: pytest.CaptureFixture[str], command: str) -> None:
    listing = _json(capsys, command, "--json")
    assert isinstance(listing, list)
    assert all(isinstance(entry, dict) and "name" in entry for entry in listing)


def test_models_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    names = [m["name"] for m in _json(capsys, "models", "actor*", "--json")]
    assert names == ["actor-critic"]
    assert _json(capsys, "models", "zzz*", "--json") == []


def test_strategies_show_devices(capsys: pytest.CaptureFixture[str]) -> None:
    eager = next(s for s in _json(capsys, "strategies", "--json") if s["name"] == "eager")
    assert eager["devices"] == ["cpu", "cuda"] and eager["plugin"] == "builtin.strategies"


def test_info_of_the_baseline_matches_keisei(capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "info", "actor-critic", "--json")
    assert info["parameters"] == 17_552_456
    assert info["state_dict_entries"] == 6
    assert info["input_shape"] == [46, 9, 9]
    assert info["output_shapes"]["policy_logits"] == [13527]
    # conv: 2*46*9*16*81 MACs-as-FLOPs; heads: 2*1296*(13527+1)
    assert info["flops_per_sample"] == 2 * 46 * 9 * 16 * 81 + 2 * 1296 * (13527 + 1)


def test_baseline_state_dict_matches_reference_listing() -> None:
    from keisei_core.api import build_model

    expected = []
    for line in REFERENCE.read_text().splitlines():
        key, shape = line.split(None, 1)
        expected.append((key, [int(x) for x in shape.strip("[] ").split(",") if x.strip()]))
    state = build_model("actor-critic").state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == expected


def test_info_options(capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "info", "actor-critic", "--set", "num_actions=10", "--set", "board_size=5", "--json")
    assert info["options"]["num_actions"] == 10
    assert info["input_shape"] == [46, 5, 5]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "actor-critc"], "keisei: error: unknown model 'actor-critc'; did you mean 'actor-critic'?"),
        (["info", "actor-critic", "--set", "board_size=0"], "board_size: must be >= 1 (got 0)"),
        (["info", "actor-critic", "--set", "board_size=x"], "board_size: expected an integer, got 'x'"),
        (["info", "actor-critic", "--set", "depth=3"], "unknown key(s) depth"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    # Built-ins only: the point is the one error line, not other plugins' warnings. The
    # CLI replaces the process-wide host; the original comes back after the test, so later
    # tests in this process still see every installed plugin.
    import keisei_core.plugins

    monkeypatch.setattr(keisei_core.plugins, "_host", keisei_core.plugins._host)
    monkeypatch.setenv("KEISEI_PLUGINS", "")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_python_dash_m_is_the_same_cli(run_cli: Any) -> None:
    done = run_cli("models", "--json")
    assert done.returncode == 0
    assert "actor-critic" in [m["name"] for m in json.loads(done.stdout)]
    assert run_cli("--version").stdout.startswith("keisei ")


def test_local_plugin_flag_and_config_plugins(tmp_path: Path, run_cli: Any) -> None:
    plugin = tmp_path / "my_models.py"
    plugin.write_text(
        "from keisei_core import hookimpl, ModelSpec\n"
        "@hookimpl\n"
        "def keisei_register_models(register):\n"
        "    register(ModelSpec(name='my-local-net', build=print, description='local'))\n"
    )
    for argv in (["-p", str(plugin), "models", "--json"], ["models", "-p", str(plugin), "--json"]):
        done = run_cli(*argv)
        assert done.returncode == 0, done.stderr
        assert "my-local-net" in [m["name"] for m in json.loads(done.stdout)]
    config = tmp_path / "exp.toml"
    config.write_text("plugins = ['my_models.py']\nmodels = [{ name = 'my-local-net' }]\n")
    done = run_cli("config", "show", str(config), "--check")
    assert done.returncode == 0, done.stderr
