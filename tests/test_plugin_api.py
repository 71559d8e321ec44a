"""The declared plugin API: keisei_core.plugin, its version check, import strings,
the torch-import warning, plugin commands, and first-party plugins importing only it."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keisei_core import plugin as api
from keisei_core.cli.main import main
from keisei_core.errors import PluginError
from keisei_core.import_strings import ImportString
from keisei_core.plugins import PluginHost
from keisei_core.plugins.api_version import api_version_problem
from keisei_core.specs import ModelSpec, ProbeSpec, StrategySpec

REPO = Path(__file__).resolve().parents[1]


def _plugin(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def _host(*local: str) -> tuple[PluginHost, list[str]]:
    warnings: list[str] = []
    host = PluginHost(local, env={"KEISEI_PLUGINS": ""}, warn=warnings.append)
    return host.load(), warnings


def test_every_declared_name_resolves_and_the_module_imports_no_torch() -> None:
    missing = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert missing == []
    assert sorted(dir(api)) == sorted(api.__all__)
    code = (
        "import sys, keisei_core.plugin as p; assert p.API_VERSION; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        (None, None),
        ("1.0", None),
        ("1.3", "provides only 1.5; upgrade keisei-core"),
        ("2.0", "major version 2 != 1"),
        ("0.9", "major version 0 != 1"),
        ("one", "must be a 'MAJOR.MINOR' string"),
        (1, "must be a 'MAJOR.MINOR' string"),
    ],
)
def test_api_version_rules(declared: object, problem: str | None) -> None:
    found = api_version_problem(declared, host_version="1.2" if declared != "1.3" else "1.5")
    if declared == "1.3":  # an older minor than the host's loads
        assert found is None
        assert "upgrade keisei-core" in (api_version_problem("1.6", host_version="1.5") or "")
    elif problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "\n" not in found


def test_a_plugin_for_another_major_version_is_listed_failed(tmp_path: Path) -> None:
    future = _plugin(
        tmp_path,
        "future_plugin",
        """
        from keisei_core.plugin import ModelSpec, hookimpl
        KEISEI_PLUGIN_API = "2.0"
        @hookimpl
        def keisei_register_models(register):
            register(ModelSpec("future-net", build="math:sqrt"))
        """,
    )
    host, warnings = _host(future)
    record = host.record("future_plugin")
    assert record is not None and record.status == "failed"
    assert "written for plugin API 2.0" in (record.error or "")
    assert "future-net" not in host.models
    assert len(warnings) == 1 and "future_plugin" in warnings[0]


def test_import_strings_resolve_on_first_call_and_name_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "lazy_target_mod.py").write_text("def build(options):\n    return ('built', options)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        path = _plugin(
            tmp_path,
            "by_string",
            """
            from keisei_core.plugin import ModelSpec, ProbeSpec, hookimpl
            KEISEI_PLUGIN_API = "1.0"
            @hookimpl
            def keisei_register_models(register):
                register(ModelSpec("lazy-net", build="lazy_target_mod:build"))
                register(ModelSpec("gone-net", build="no_such_module_xyz.net:build"))
            @hookimpl
            def keisei_register_probes(register):
                register(ProbeSpec("lazy-probe", run="lazy_target_mod:nothing_here"))
            """,
        )
        host, warnings = _host(path)
        assert warnings == []
        assert "lazy_target_mod" not in sys.modules  # registering imports nothing
        assert host.models.get("lazy-net").build(3) == ("built", 3)
        with pytest.raises(PluginError, match=r"^plugin 'by_string': cannot import 'no_such_module_xyz.net:build': ModuleNotFoundError"):
            host.models.get("gone-net").build(None)
        with pytest.raises(PluginError, match=r"plugin 'by_string'.*AttributeError"):
            host.probes.get("lazy-probe").run(None)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lazy_target_mod", None)


def test_import_string_format_and_pickling() -> None:
    with pytest.raises(ValueError, match=r"must look like 'package\.module:function'"):
        StrategySpec("bad", apply="not an import string")
    spec = ProbeSpec("p", run="math:sqrt")
    assert isinstance(spec.run, ImportString) and spec.run(16.0) == 4.0
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec and copy.run(9.0) == 3.0
    assert ModelSpec("m", build=len).build is len  # a callable stays as it is


def test_an_installed_plugin_that_imports_torch_at_import_is_named_in_a_warning(tmp_path: Path) -> None:
    (tmp_path / "heavy_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            import torch
            from keisei_core.plugin import ModelSpec, hookimpl
            @hookimpl
            def keisei_register_models(register):
                register(ModelSpec("heavy-net", build=lambda options: torch.nn.Linear(1, 1)))
            """
        )
    )
    light = _plugin(tmp_path, "light_local", "import torch\n" + textwrap.dedent(COMMAND_PLUGIN))

    def warnings_of(local: list[str], installed: list[str]) -> list[str]:
        # An installed plugin is loaded by every command; a local one (-p) only where asked.
        code = (
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
            "from keisei_core.plugins import PluginHost, PluginRecord; w = []; "
            f"h = PluginHost({local!r}, env={{'KEISEI_PLUGINS': ''}}, warn=w.append, include_installed=False); "
            f"h.records += [PluginRecord(name=t, source='installed', target=t) for t in {installed!r}]; "
            "h.load(); assert all(r.status == 'loaded' for r in h.records), h.records; print(w)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return ast.literal_eval(done.stdout.strip())  # type: ignore[no-any-return]

    (warning,) = warnings_of([], ["heavy_plugin_mod"])
    assert "plugin 'heavy_plugin_mod' imports torch when 'heavy_plugin_mod' is imported" in warning
    assert warnings_of([light], []) == []


def test_every_first_party_plugin_imports_without_torch() -> None:
    code = (
        "import sys; from keisei_core.plugins import PluginHost; w = []; "
        "h = PluginHost(warn=w.append).load(); "
        "print(sorted(r.name for r in h.records if r.status == 'loaded')); print(w); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, warnings, torch_loaded = out.strip().splitlines()
    assert "restower" in loaded and "fused-se" in loaded
    assert warnings == "[]" and torch_loaded == "False"


COMMAND_PLUGIN = """
    from keisei_core.plugin import CommandSpec, hookimpl

    def configure(parser):
        parser.add_argument("--who", default="world")

    def run(ctx):
        print(f"hello {ctx.args.who} from", ctx.host().record("greeter").name)
        return 3

    @hookimpl
    def keisei_register_commands(register):
        register(CommandSpec("hello", run=run, configure=configure, help="say hello"))
        register(CommandSpec("models", run=run, help="clashes with a built-in"))
"""


def test_plugins_add_cli_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _plugin(tmp_path, "greeter", COMMAND_PLUGIN)
    assert main(["-p", path, "hello", "--who", "keisei"]) == 3
    captured = capsys.readouterr()
    assert "hello keisei from greeter" in captured.out
    assert "plugin 'greeter' registers the command 'models', which is a built-in command" in captured.err
    assert main(["hello", "-p", path]) == 3  # -p after the command works too
    assert "hello world" in capsys.readouterr().out
    assert main(["-p", path, "models", "--json"]) == 0  # the built-in wins, plugin not loaded for it
    assert "registers the command" not in capsys.readouterr().err


def test_first_party_commands_are_keisei_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("ddp-bench", "fused-se-bench"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert f"keisei {command}" in capsys.readouterr().out


def _core_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno} {m}" for m in modules
                  if m.split(".")[0] == "keisei_core" and m != "keisei_core.plugin"]
    return found


def test_first_party_plugins_import_only_the_plugin_api() -> None:
    sources = sorted(REPO.glob("plugins/*/keisei_plugin_*/**/*.py"))
    assert len(sources) > 20
    outside = [hit for path in sources for hit in _core_imports(path)]
    assert outside == []


def test_first_party_plugins_pin_the_compatible_core_range() -> None:
    import tomllib

    for pyproject in sorted(REPO.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        core = [d for d in project["dependencies"] if d.startswith("keisei-core")]
        assert core == ["keisei-core>=0.1,<0.2"], pyproject
        assert project["license"] == "MIT", pyproject
        uses_attrs = any(
            "import attrs" in p.read_text() for p in pyproject.parent.glob("keisei_plugin_*/**/*.py")
        )
        if uses_attrs:
            assert any(d.startswith("attrs") for d in project["dependencies"]), pyproject


def test_the_baseline_is_a_role_on_its_spec(tmp_path: Path) -> None:
    second = _plugin(
        tmp_path,
        "second_baseline",
        """
        from keisei_core.plugin import StrategySpec, hookimpl
        @hookimpl
        def keisei_register_compile_strategies(register):
            register(StrategySpec("my-eager", apply="copy:copy", baseline=True))
        """,
    )
    host, warnings = _host(second)
    assert host.baseline_strategy() == "eager" and host.strategies.get("eager").baseline
    record = host.record("second_baseline")
    assert record is not None and record.status == "failed" and "my-eager" not in host.strategies
    assert "'eager' (plugin 'builtin.strategies') already is the baseline" in (record.error or "")
    # Without the built-in, the plugin's strategy is the baseline the bench skips applying.
    alone = PluginHost(
        [second], env={"KEISEI_PLUGINS": "", "KEISEI_DISABLE_PLUGINS": "builtin.strategies"}, warn=warnings.append
    ).load()
    assert alone.baseline_strategy() == "my-eager"
    from keisei_core.bench.strategies import is_baseline

    assert is_baseline(alone, "my-eager") and not is_baseline(host, "my-eager")


def test_tables_compare_against_the_runs_baseline() -> None:
    from keisei_core.bench.probe_api import ProbeResult
    from keisei_core.bench.results import CellRecord, Results
    from keisei_core.bench.table import format_results_table
    from keisei_core.stats import summarize

    def cell(strategy: str, value: float) -> CellRecord:
        stats = summarize([value] * 3, unit="samples/s")
        return CellRecord(
            model="m", model_label="m", model_options={}, strategy=strategy, probe="throughput",
            batch_size=1, device="cpu", dtype="float32", status="ok",
            result=ProbeResult("throughput", "samples/s", value, stats),
        )

    cells = [cell("my-eager", 100.0), cell("fast", 250.0)]
    table = format_results_table(Results(run={"baseline": "my-eager"}, manifest={}, cells=cells))
    assert "×my-eager" in table and "2.50" in table
    old_file = Results(run={}, manifest={}, cells=cells)  # written before the role: eager
    assert old_file.baseline == "eager" and "×" not in format_results_table(old_file)
