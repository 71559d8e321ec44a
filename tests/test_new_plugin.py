"""``keisei new-plugin``: what it writes, what it refuses, and that the result works.

The end-to-end test generates one plugin of each kind, installs them with pip into a
private ``--target`` folder (the test venv stays clean), and checks that they are listed
by ``keisei plugins``, show up in ``keisei models|strategies|probes``, run in
``keisei bench`` and pass their own generated tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from keisei_core.config.files import tomllib
from keisei_core.scaffold import KINDS, PluginNames, ScaffoldError, render_plugin, write_plugin

EXPECTED_FILES = {
    "model": {"network.py", "options.py"},
    "strategy": {"strategy.py"},
    "probe": {"probe.py"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_complete_distribution(kind: str) -> None:
    names = PluginNames.from_name("my-thing", kind)
    files = render_plugin(names)
    package = "keisei_plugin_my_thing"
    expected = {
        "pyproject.toml",
        "README.md",
        f"{package}/__init__.py",
        f"{package}/plugin.py",
        f"{package}/py.typed",
        f"tests/test_{package}.py",
        *(f"{package}/{name}" for name in EXPECTED_FILES[kind]),
    }
    assert set(files) == expected
    for path, text in files.items():
        assert "{{" not in text, f"unrendered placeholder in {path}"
        if path.endswith(".py"):
            compile(text, path, "exec")
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "keisei-plugin-my-thing"
    assert project["project"]["entry-points"]["keisei"] == {"my-thing": f"{package}.plugin"}
    # The entry point must stay light: torch only under TYPE_CHECKING, never at module level.
    top_level = [line for line in files[f"{package}/plugin.py"].splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_level if "torch" in line]


@pytest.mark.parametrize(
    ("raw", "name", "package", "title"),
    [
        ("my-net", "my-net", "keisei_plugin_my_net", "MyNet"),
        ("keisei-plugin-fast.x", "fast.x", "keisei_plugin_fast_x", "FastX"),
        ("3d_conv", "3d_conv", "keisei_plugin_3d_conv", "K3dConv"),
    ],
)
def test_names_are_derived_from_the_one_given(raw: str, name: str, package: str, title: str) -> None:
    names = PluginNames.from_name(raw, "model")
    assert (names.name, names.package, names.title, names.dist) == (name, package, title, f"keisei-plugin-{name}")
    assert names.package.isidentifier() and names.title.isidentifier()


@pytest.mark.parametrize("raw", ["My Net", "-net", "a+b", "", "net/x"])
def test_invalid_names_are_refused(raw: str) -> None:
    with pytest.raises(ScaffoldError, match="invalid plugin name"):
        PluginNames.from_name(raw, "model")


def test_an_existing_folder_is_never_overwritten(tmp_path: Path) -> None:
    names = PluginNames.from_name("my-net", "model")
    (tmp_path / names.dist).mkdir()
    (tmp_path / names.dist / "mine.txt").write_text("keep me")
    with pytest.raises(ScaffoldError, match="already exists"):
        write_plugin(names, tmp_path)
    assert [p.name for p in (tmp_path / names.dist).iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [names.dist], "no staging folder is left behind"


def test_cli_writes_the_plugin_and_refuses_a_second_time(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = run_cli("new-plugin", "my-net", "--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    target = tmp_path / "keisei-plugin-my-net"
    assert (target / "keisei_plugin_my_net" / "network.py").is_file()
    assert str(target) in first.stdout
    second = run_cli("new-plugin", "my-net", "--dir", str(tmp_path))
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if line.startswith("keisei: error")]
    assert len(errors) == 1 and "already exists" in errors[0] and "Traceback" not in second.stderr


def test_cli_refuses_a_name_already_registered(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = run_cli("new-plugin", "actor-critic", "--dir", str(tmp_path))
    assert done.returncode == 2
    assert "already registered by plugin 'builtin.models'" in done.stderr
    assert not any(tmp_path.iterdir())
    strategy = run_cli("new-plugin", "actor-critic", "--kind", "strategy", "--dir", str(tmp_path))
    assert strategy.returncode == 0, strategy.stderr  # names are per kind


# -- end to end -------------------------------------------------------------------------------
MODEL, STRATEGY, PROBE = "kit-demo-net", "kit-demo-compile", "kit-demo-tail"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The three generated plugins pip-installed into a private target; the environment
    for subprocesses that should see them."""
    root = tmp_path_factory.mktemp("generated")
    target = tmp_path_factory.mktemp("site")
    folders = [
        write_plugin(PluginNames.from_name(name, kind), root)
        for name, kind in ((MODEL, "model"), (STRATEGY, "strategy"), (PROBE, "probe"))
    ]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), *map(str, folders)],
        check=True, capture_output=True, text=True,
    )
    path = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    yield {**os.environ, "PYTHONPATH": path, "KEISEI_GENERATED": str(root)}


def _keisei(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keisei_core", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


# The four listings run in one interpreter, each through the CLI entry point with its
# stdout captured: one Python start instead of four.
LISTINGS = """
import contextlib, io, json, sys
from keisei_core.cli.main import main
outputs = []
for argv in json.loads(sys.argv[1]):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    outputs.append({"argv": argv, "code": code, "stdout": buffer.getvalue()})
print(json.dumps(outputs))
"""


@pytest.mark.slow
def test_generated_plugins_are_listed_and_registered(installed: dict[str, str]) -> None:
    commands = [["plugins", "--json"], ["models", MODEL, "--json"], ["strategies", "--json"], ["probes", "--json"]]
    done = subprocess.run(
        [sys.executable, "-c", LISTINGS, json.dumps(commands)], env=installed, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = json.loads(done.stdout)
    assert [o["code"] for o in outputs] == [0, 0, 0, 0]
    plugins_json, models_json, strategies_json, probes_json = (json.loads(o["stdout"]) for o in outputs)
    plugins = {p["name"]: p for p in plugins_json}
    for name in (MODEL, STRATEGY, PROBE):
        assert plugins[name]["source"] == "installed"
        assert plugins[name]["distribution"] == f"keisei-plugin-{name}" and plugins[name]["version"] == "0.1.0"
    assert [m["name"] for m in models_json] == [MODEL] and models_json[0]["plugin"] == MODEL
    assert STRATEGY in {s["name"] for s in strategies_json}
    assert PROBE in {p["name"] for p in probes_json}


@pytest.mark.slow
def test_generated_plugins_run_in_keisei_bench(installed: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            name = "generated-plugins"
            strategies = ["eager", "{STRATEGY}"]
            probes = ["latency", "{PROBE}"]
            batch_sizes = [1, 4]

            [[models]]
            name = "{MODEL}"
            options = {{ depth = 1, width = 8, num_actions = 256 }}

            [bench]
            warmup_seconds = 0.0
            min_samples = 3
            max_samples = 5
            time_budget_seconds = 0.2

            [wandb]
            mode = "disabled"
            """
        )
    )
    out = tmp_path / "out"
    done = _keisei(installed, "bench", str(config), "--out", str(out), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert len(cells) == 8
    assert all(cell["status"] == "ok" for cell in cells), [c["reason"] for c in cells if c["status"] != "ok"]
    compiled = [c for c in cells if c["strategy"] == STRATEGY]
    assert all(c["compile_report"]["status"] == "compiled" for c in compiled)


@pytest.mark.slow
def test_generated_plugins_pass_their_own_tests(installed: dict[str, str]) -> None:
    root = Path(installed["KEISEI_GENERATED"])
    folders = [str(root / f"keisei-plugin-{name}" / "tests") for name in (MODEL, STRATEGY, PROBE)]
    # The model's contract checks equivalence under every installed strategy; on this CPU
    # that is minutes of compiling, so the run narrows it to eager and the generated one.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--keisei-strategies",
         f"eager,{STRATEGY}", *folders],
        env=installed, cwd=root, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "error" not in summary
