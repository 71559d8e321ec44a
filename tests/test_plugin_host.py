"""The plugin host: sources, selection, isolation of broken plugins, strict mode."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from keisei_core.errors import PluginError, UnknownNameError
from keisei_core.plugins import PluginHost

ONLY_TEST_PLUGINS = {"KEISEI_PLUGINS": "demo,broken,dup"}


def _host(*local: str, env: dict[str, str] | None = None, strict: bool | None = None) -> tuple[PluginHost, list[str]]:
    warnings: list[str] = []
    host = PluginHost(local, env=env if env is not None else {"KEISEI_PLUGINS": ""}, warn=warnings.append, strict=strict)
    return host.load(), warnings


def _local_plugin(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_builtins_are_ordinary_plugins() -> None:
    host, warnings = _host()
    assert warnings == []
    assert "actor-critic" in host.models
    assert "eager" in host.strategies
    assert host.models.registration("actor-critic").plugin == "builtin.models"
    assert {r.name for r in host.records if r.source == "builtin"} >= {"builtin.models", "builtin.strategies"}


def test_local_file_plugin_registers(tmp_path: Path) -> None:
    path = _local_plugin(
        tmp_path,
        "my_models",
        """
        from keisei_core import hookimpl, ModelSpec
        def build(options):
            raise AssertionError
        @hookimpl
        def keisei_register_models(register):
            register(ModelSpec(name="my-net", build=build, description="mine"))
        """,
    )
    host, warnings = _host(path)
    assert warnings == []
    assert host.models.registration("my-net").plugin == "my_models"
    assert host.record("my_models").status == "loaded"  # type: ignore[union-attr]
    assert host.record("my_models").hooks == ["keisei_register_models"]  # type: ignore[union-attr]


def test_module_plugin_by_dotted_name() -> None:
    host, warnings = _host("keisei_core.builtin.strategies", env={"KEISEI_PLUGINS": "", "KEISEI_DISABLE_PLUGINS": "builtin.strategies"})
    # The built-in is disabled; the same module loaded as a local plugin registers 'eager'.
    assert warnings == []
    assert host.strategies.registration("eager").plugin == "keisei_core.builtin.strategies"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("raise ImportError('missing dependency xyz')", "import of"),
        (
            """
            from keisei_core import hookimpl
            @hookimpl
            def keisei_register_models(register):
                raise ValueError('boom')
            """,
            "hook keisei_register_models raised ValueError: boom",
        ),
        (
            """
            from keisei_core import hookimpl
            @hookimpl
            def keisei_register_models(register):
                register("not a spec")
            """,
            "register() for models takes a ModelSpec, got str",
        ),
        (
            """
            from keisei_core import hookimpl
            @hookimpl
            def keisei_register_modles(register):
                pass
            """,
            "unknown hook 'keisei_register_modles'; did you mean 'keisei_register_models'?",
        ),
        (
            """
            from keisei_core import hookimpl
            @hookimpl
            def keisei_register_models(register, extra_argument):
                pass
            """,
            "invalid hook implementation",
        ),
        (
            """
            def keisei_register_models(register):
                pass
            """,
            "not decorated with @keisei_core.hookimpl",
        ),
        (
            """
            from keisei_core import hookimpl, ModelSpec
            @hookimpl
            def keisei_register_models(register):
                register(ModelSpec(name="Bad Name!", build=print))
            """,
            "invalid model name",
        ),
    ],
    ids=["import-error", "hook-raises", "wrong-spec-type", "misspelled-hook", "bad-signature", "unmarked", "bad-name"],
)
def test_broken_local_plugin_is_isolated(tmp_path: Path, body: str, reason: str) -> None:
    path = _local_plugin(tmp_path, "broken_one", body)
    host, warnings = _host(path)
    record = host.record("broken_one")
    assert record is not None and record.status == "failed"
    assert reason in (record.error or "")
    assert "\n" not in (record.error or "")
    assert len(warnings) == 1 and "broken_one" in warnings[0] and "\n" not in warnings[0]
    assert "actor-critic" in host.models  # everything else keeps working


def test_failed_plugin_leaves_nothing_half_registered(tmp_path: Path) -> None:
    path = _local_plugin(
        tmp_path,
        "half",
        """
        from keisei_core import hookimpl, ModelSpec, StrategySpec
        @hookimpl
        def keisei_register_compile_strategies(register):
            register(StrategySpec(name="half-strategy", apply=lambda m, c: m))
        @hookimpl
        def keisei_register_models(register):
            register(ModelSpec(name="half-model", build=print))
            raise RuntimeError("fails after registering one model")
        """,
    )
    host, _ = _host(path)
    assert host.record("half").status == "failed"  # type: ignore[union-attr]
    assert "half-model" not in host.models
    assert "half-strategy" not in host.strategies


def test_strict_mode_raises(tmp_path: Path) -> None:
    path = _local_plugin(tmp_path, "bad", "raise RuntimeError('nope')")
    with pytest.raises(PluginError, match=r"plugin 'bad' failed: import of .* RuntimeError: nope"):
        _host(path, strict=True)
    with pytest.raises(PluginError):
        _host(path, env={"KEISEI_PLUGINS": "", "KEISEI_STRICT_PLUGINS": "1"})


def test_installed_distributions_are_discovered(installed_plugins: Path) -> None:
    host, warnings = _host(env=ONLY_TEST_PLUGINS)
    demo = host.record("demo")
    assert demo is not None
    assert (demo.status, demo.distribution, demo.version) == ("loaded", "keisei-demo-plugin", "1.2.3")
    assert host.models.registration("demo-net").distribution == "keisei-demo-plugin"
    broken = host.record("broken")
    assert broken is not None and broken.status == "failed"
    assert "this plugin is broken on purpose" in (broken.error or "")
    dup = host.record("dup")
    assert dup is not None and dup.status == "failed"
    # A duplicate names both plugins and both distributions; nothing of 'dup' stays.
    assert "model name 'actor-critic' is already registered by plugin 'builtin.models'" in (dup.error or "")
    assert "keisei-dup-plugin" in (dup.error or "") and "keisei-core" in (dup.error or "")
    assert "dup-only-model" not in host.models
    assert len(warnings) == 2


def test_selection_by_environment(installed_plugins: Path) -> None:
    host, _ = _host(env={"KEISEI_PLUGINS": "demo"})
    assert host.record("broken").status == "disabled"  # type: ignore[union-attr]
    assert "demo-net" in host.models
    host, warnings = _host(env={"KEISEI_PLUGINS": "demo,broken,dup", "KEISEI_DISABLE_PLUGINS": "broken,dup"})
    assert warnings == []
    assert host.record("dup").status == "disabled"  # type: ignore[union-attr]
    host, _ = _host(env={"KEISEI_PLUGINS": ""})
    assert all(r.status == "disabled" for r in host.records if r.source == "installed")
    assert "demo-net" not in host.models


def test_unknown_name_suggests_closest() -> None:
    host, _ = _host()
    with pytest.raises(UnknownNameError, match=r"unknown model 'actor-critc'; did you mean 'actor-critic'\?"):
        host.models.get("actor-critc")


def test_plugins_listing_reads_metadata_without_importing(installed_plugins: Path) -> None:
    code = (
        "import sys, json, io, contextlib\n"
        "from keisei_core.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['plugins', '--json'])\n"
        "assert rc == 0\n"
        "assert 'torch' not in sys.modules, 'listing imported torch'\n"
        "assert not any(m.startswith('keisei_demo_plugin') for m in sys.modules)\n"
        "assert not any(m.startswith('keisei_broken_plugin') for m in sys.modules)\n"
        "print(out.getvalue())\n"
    )
    import subprocess
    import sys

    env = {"PYTHONPATH": str(installed_plugins), "KEISEI_DISABLE_PLUGINS": "dup"}
    import os

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    listing = {entry["name"]: entry for entry in json.loads(done.stdout)}
    assert listing["demo"]["status"] == "not-loaded"
    assert listing["demo"]["distribution"] == "keisei-demo-plugin"
    assert listing["demo"]["version"] == "1.2.3"
    assert listing["dup"]["status"] == "disabled"
    assert listing["builtin.models"]["source"] == "builtin"


def test_cli_warns_in_one_line_and_keeps_working(installed_plugins: Path, run_cli) -> None:
    done = run_cli("models", "--json", env={"PYTHONPATH": str(installed_plugins), **ONLY_TEST_PLUGINS})
    assert done.returncode == 0, done.stderr
    names = [m["name"] for m in json.loads(done.stdout)]
    assert "demo-net" in names and "actor-critic" in names
    warning_lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warning_lines) == 2
    assert all(line.startswith("keisei: warning: plugin '") for line in warning_lines)
    strict = run_cli("--strict-plugins", "models", env={"PYTHONPATH": str(installed_plugins), **ONLY_TEST_PLUGINS})
    assert strict.returncode == 2
    assert strict.stderr.startswith("keisei: error: plugin 'broken' failed")
    assert "Traceback" not in strict.stderr


def test_verbose_listing_shows_hooks_and_errors(installed_plugins: Path, run_cli) -> None:
    done = run_cli("plugins", "--verbose", "--json", env={"PYTHONPATH": str(installed_plugins), **ONLY_TEST_PLUGINS})
    assert done.returncode == 0, done.stderr
    listing = {entry["name"]: entry for entry in json.loads(done.stdout)}
    assert listing["demo"]["status"] == "loaded"
    assert listing["demo"]["hooks"] == ["keisei_register_models"]
    assert listing["demo"]["registered"] == {"models": ["demo-net"]}
    assert listing["broken"]["status"] == "failed"
