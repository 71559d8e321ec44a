"""The reference docs stay true: every hook, CLI command and option, config key and
bundled probe is documented (as datasette tests its hooks), examples parse, links
resolve, and the tutorial's commands run."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import attrs
import pluggy
import pytest

from keisei_core import hookspecs
from keisei_core.cli.main import build_parser
from keisei_core.commands_spec import CommandSpec
from keisei_core.config.experiment import ExperimentConfig, load_experiment
from keisei_core.config.files import tomllib
from keisei_core.plugins import get_host
from keisei_core.specs import ModelSpec, ProbeSpec, StrategyContext, StrategySpec

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
KIT_DOCS = ("hooks.md", "cli.md", "config.md", "probes.md", "testing.md", "plugin-tutorial.md", "architecture.md")
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```", re.S | re.M)


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of the same or a higher level."""
    found: dict[str, str] = {}
    headings = list(re.finditer(r"^(#+) (.+)$", text, re.M))
    for index, match in enumerate(headings):
        level = len(match.group(1))
        end = len(text)
        for later in headings[index + 1 :]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        found[match.group(2).strip()] = text[match.end() : end]
    return found


def blocks(text: str) -> Iterator[tuple[str, str]]:
    """(info string, body) of every fenced code block."""
    for match in FENCE.finditer(text):
        yield match.group("info").strip(), match.group("body")


# -- hooks ----------------------------------------------------------------------------------
def hook_names() -> set[str]:
    marker = pluggy.HookspecMarker(hookspecs.PROJECT_NAME)
    return {
        name
        for name in dir(hookspecs)
        if callable(getattr(hookspecs, name)) and hasattr(getattr(hookspecs, name), marker.project_name + "_spec")
    }


def test_every_hook_is_documented_and_every_documented_hook_exists() -> None:
    hooks = hook_names()
    assert hooks == set(hookspecs.HOOK_NAMES), "HOOK_NAMES and the hookspecs disagree"
    documented = {title for title in sections(read("hooks.md")) if title.startswith("keisei_")}
    assert hooks - documented == set(), f"hooks without a section in docs/hooks.md: {sorted(hooks - documented)}"
    assert documented - hooks == set(), f"docs/hooks.md documents hooks that do not exist: {sorted(documented - hooks)}"


@pytest.mark.parametrize(
    ("hook", "cls"),
    [
        ("keisei_register_models", ModelSpec),
        ("keisei_register_compile_strategies", StrategySpec),
        ("keisei_register_compile_strategies", StrategyContext),
        ("keisei_register_probes", ProbeSpec),
        ("keisei_register_commands", CommandSpec),
    ],
)
def test_every_spec_field_is_documented_with_its_hook(hook: str, cls: type) -> None:
    text = sections(read("hooks.md"))[hook]
    missing = [f.name for f in attrs.fields(cls) if f"`{f.name}`" not in text]
    assert not missing, f"{cls.__name__} fields missing from the '{hook}' section of docs/hooks.md: {missing}"


# -- CLI ------------------------------------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """('keisei models', parser), ('keisei config show', parser), ... (recursively), with
    the commands the installed first-party plugins add."""
    from keisei_core.plugins import PluginHost

    # A fresh host: the process-wide one may have been configured by an earlier test.
    stack = [("keisei", build_parser(PluginHost().load().commands))]
    while stack:
        path, parser = stack.pop()
        yield path, parser
        stack.extend((f"{path} {name}", sub) for name, sub in _subparsers(parser).items())


def option_words(parser: argparse.ArgumentParser, inherited: set[str]) -> list[str]:
    """Every option string and positional metavar a command takes, minus the options
    every command inherits from the top level (documented once, under `keisei`)."""
    words = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            words.extend(s for s in action.option_strings if s not in inherited)
        else:
            words.append(action.metavar if isinstance(action.metavar, str) else action.dest.upper())
    return words


def test_every_command_and_option_is_documented() -> None:
    docs = sections(read("cli.md"))
    top = build_parser()
    inherited = {s for a in top._actions for s in a.option_strings} - {"-h", "--help"}
    problems = []
    for path, parser in commands():
        if path not in docs:
            problems.append(f"no section '{path}'")
            continue
        words = option_words(parser, inherited if path != "keisei" else set())
        problems.extend(f"'{path}' lacks `{word}`" for word in words if not re.search(rf"`{re.escape(word)}\b", docs[path]))
    assert not problems, "docs/cli.md is out of date: " + "; ".join(problems)


def test_every_documented_command_exists() -> None:
    known = {path for path, _ in commands()}
    documented = {title for title in sections(read("cli.md")) if title.startswith("keisei")}
    assert documented <= known, f"docs/cli.md documents commands that do not exist: {sorted(documented - known)}"


# -- config ---------------------------------------------------------------------------------
def config_keys(cls: type, prefix: str = "") -> Iterator[str]:
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        key = f"{prefix}{field.name}"
        yield key
        annotation = hints[field.name]
        if attrs.has(annotation):
            yield from config_keys(annotation, key + ".")
        elif typing.get_origin(annotation) is list:
            (item,) = typing.get_args(annotation)
            if attrs.has(item):
                yield from config_keys(item, key + "[].")


def test_every_config_key_is_documented() -> None:
    text = read("config.md")
    keys = list(config_keys(ExperimentConfig))
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"config keys missing from docs/config.md: {missing}"
    assert "models[].name" in keys and "bench.threads" in keys  # the walk reaches nested tables


def test_config_examples_are_valid_configs(tmp_path: Path) -> None:
    found = 0
    for info, body in blocks(read("config.md")):
        if info.startswith("toml"):
            path = tmp_path / f"example{found}.toml"
            path.write_text(body)
            load_experiment(path)  # typed and validated, or a ConfigError
            found += 1
    assert found >= 2


# -- probes ---------------------------------------------------------------------------------
def bundled_distributions() -> set[str]:
    names = set()
    for project in REPO.glob("plugins/*/pyproject.toml"):
        names.add(tomllib.loads(project.read_text())["project"]["name"])
    return names


def test_every_builtin_and_bundled_probe_is_documented() -> None:
    bundled = bundled_distributions()
    probes = [r for r in get_host().probes if r.distribution is None or r.distribution in bundled]
    assert {"latency", "throughput", "train-step"} <= {r.name for r in probes}
    documented = set(sections(read("probes.md")))
    missing = [r.name for r in probes if r.name not in documented]
    assert not missing, f"probes without a section in docs/probes.md: {missing}"
    for registration in probes:
        body = sections(read("probes.md"))[registration.name]
        unit = registration.spec.unit
        assert f"`{unit}`" in body, f"docs/probes.md: '{registration.name}' does not state its unit `{unit}`"


def test_probe_context_fields_are_documented() -> None:
    from keisei_core.bench.probe_api import ProbeContext

    text = sections(read("probes.md"))["Writing a probe"]
    missing = [f.name for f in attrs.fields(ProbeContext) if f"`{f.name}`" not in text]
    assert not missing, f"ProbeContext fields missing from docs/probes.md: {missing}"


# -- examples and links ---------------------------------------------------------------------
@pytest.mark.parametrize("name", KIT_DOCS)
def test_python_examples_compile(name: str) -> None:
    for index, (info, body) in enumerate(blocks(read(name))):
        if info.split(" ")[0] == "python":
            compile(body, f"{name} block {index}", "exec")


@pytest.mark.parametrize("name", KIT_DOCS)
def test_relative_links_resolve(name: str) -> None:
    for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", read(name)):
        assert (DOCS / target).is_file(), f"docs/{name} links to missing {target}"


# -- the tutorial ---------------------------------------------------------------------------
# Consecutive `keisei` commands run in one interpreter (each through the real CLI entry
# point, `main(argv)`, with a fresh plugin host): starting Python and torch once per
# command would cost seconds each on this CPU.
RUN_KEISEI = """
import json, sys
from keisei_core.cli.main import main
for argv in json.loads(sys.argv[1]):
    print("$ keisei " + " ".join(argv), flush=True)
    code = main(argv)
    if code:
        sys.exit(f"keisei {' '.join(argv)} exited {code}")
"""


def tutorial_steps(text: str) -> Iterator[tuple[str, list[str]]]:
    """('file', [name, body]) for ``file=`` blocks and ('keisei'|'pytest', argv) for the
    lines of ``bash run`` blocks, in order."""
    for info, body in blocks(text):
        words = info.split()
        files = [w.removeprefix("file=") for w in words if w.startswith("file=")]
        if files:
            yield "file", [files[0], body]
        elif words[:2] == ["bash", "run"]:
            for line in filter(str.strip, body.splitlines()):
                argv = shlex.split(line, comments=True)
                assert argv[0] in ("keisei", "pytest"), f"the tutorial runs only keisei and pytest, not {argv[0]!r}"
                yield argv[0], argv[1:]


@pytest.mark.slow
def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    """Writes every ``file=`` block and runs every ``bash run`` line, in order, in an
    empty folder: the local-file way end to end and `keisei new-plugin` of the packaged
    way (its pip install is tests/test_new_plugin.py's)."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    steps = list(tutorial_steps(read("plugin-tutorial.md")))
    assert sum(kind != "file" for kind, _ in steps) >= 5

    def run(command: list[str], what: str) -> None:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    pending: list[list[str]] = []
    for kind, value in [*steps, ("end", [])]:
        if kind == "keisei":
            pending.append(value)
            continue
        if pending:
            run([sys.executable, "-c", RUN_KEISEI, json.dumps(pending)], f"keisei {pending}")
            pending = []
        if kind == "file":
            (tmp_path / value[0]).write_text(value[1])
        elif kind == "pytest":
            run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *value], f"pytest {value}")
    assert (tmp_path / "keisei-plugin-my-net" / "keisei_plugin_my_net" / "plugin.py").is_file()
    assert list((tmp_path / "results").glob("my-mlp-*/results.json")), "the tutorial's bench wrote no results"


def test_child_process_helpers_in_probes_md_exist() -> None:
    import inspect

    from keisei_core.bench import child

    body = sections(read("probes.md"))["Probes that need a fresh process"]
    names = re.findall(r"^\| `([a-z_]+)\(", body, re.M) + re.findall(r"`([a-z_]+)\(\)`", body)
    assert {"run_child", "child_main", "build_probe_context", "peak_rss_bytes"} <= set(names), names
    for name in names:
        assert callable(getattr(child, name, None)), f"docs/probes.md names keisei_core.bench.child.{name}, which does not exist"
    documented = re.search(r"`run_child\(([^)]*)\)`", body)
    assert documented is not None
    for parameter in inspect.signature(child.run_child).parameters:
        assert parameter in documented.group(1), f"run_child's parameter {parameter!r} is not in docs/probes.md"
