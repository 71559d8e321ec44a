"""The README is the front door: its commands exist, its links resolve, its example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")


def test_two_commands_come_first() -> None:
    first_section = TEXT.split("\n## ", 2)[1]
    assert "make bench" in first_section and "make test" in first_section


def test_every_local_link_resolves() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", TEXT):
        if target.startswith(("http://", "https://")):
            continue
        assert (README.parent / target).exists(), f"README links to missing {target}"


def test_every_listed_command_exists() -> None:
    from keisei_core.cli.main import command_modules

    listed = set(re.findall(r"^\| `keisei ([a-z-]+)", TEXT, flags=re.M))
    known = {module.NAME for module in command_modules()}
    assert listed <= known, listed - known
    assert known <= listed, f"commands missing from the README table: {known - listed}"


def test_plugin_example_runs(tmp_path: Path, run_cli: Any) -> None:
    code = re.search(r"```python\n# my_models.py\n(.*?)```", TEXT, flags=re.S)
    assert code is not None
    plugin = tmp_path / "my_models.py"
    plugin.write_text(code.group(1))
    done = run_cli("-p", str(plugin), "info", "tiny", "--set", "hidden=32", "--json", env={"KEISEI_PLUGINS": ""})
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["options"]["hidden"] == 32
    assert info["parameters"] == 46 * 81 * 32 + 32 + 32 * 13527 + 13527 + 32 + 1
