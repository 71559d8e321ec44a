"""``keisei new-plugin``: render a complete plugin distribution from packaged templates.

Templates live in ``keisei_core/scaffold/templates/`` (package data, ``*.tmpl``):
``common/`` for every kind plus one folder per kind (``model``, ``strategy``,
``probe``). In paths, ``__package__`` becomes the import package; in contents,
``{{name}}``, ``{{dist}}``, ``{{package}}``, ``{{ident}}``, ``{{title}}``, ``{{summary}}``,
``{{core_version}}``, ``{{core_upper}}`` (the end of the compatible keisei-core range) and
``{{plugin_api}}`` (the plugin API version) are replaced. Nothing here imports torch.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import attrs

from keisei_core.errors import KeiseiError
from keisei_core.specs import NAME_PATTERN

KINDS: tuple[str, ...] = ("model", "strategy", "probe")
DIST_PREFIX = "keisei-plugin-"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_KIND_WORDS = {"model": "model", "strategy": "compile strategy", "probe": "benchmark probe"}


class ScaffoldError(KeiseiError):
    """``keisei new-plugin`` cannot write the plugin (bad name, existing folder)."""


@attrs.frozen
class PluginNames:
    """Every name a generated plugin uses, derived from the one NAME the user gives."""

    name: str  # the registered model/strategy/probe name and the entry-point name
    kind: str
    dist: str  # distribution: keisei-plugin-NAME
    package: str  # import package: keisei_plugin_NAME
    ident: str  # NAME as a Python identifier fragment
    title: str  # NAME in CamelCase, for class names
    summary: str

    @classmethod
    def from_name(cls, raw: str, kind: str) -> PluginNames:
        if kind not in KINDS:
            raise ScaffoldError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
        name = raw.strip()
        if name.startswith(DIST_PREFIX):
            name = name[len(DIST_PREFIX):]
        if not NAME_PATTERN.match(name):
            raise ScaffoldError(
                f"invalid plugin name {raw!r}: use lower-case letters, digits, '-', '_' or '.', "
                "starting with a letter or digit (e.g. 'my-net')"
            )
        ident = re.sub(r"[^a-z0-9_]", "_", name)
        words = [w for w in re.split(r"[^a-z0-9]+", name) if w]
        title = "".join(w[:1].upper() + w[1:] for w in words)
        if title[:1].isdigit():
            title = "K" + title
        summary = f"The {name} {_KIND_WORDS[kind]} for keisei."
        return cls(name, kind, DIST_PREFIX + name, "keisei_plugin_" + ident, ident, title, summary)

    def values(self) -> dict[str, str]:
        from keisei_core import __version__
        from keisei_core.hookspecs import API_VERSION

        major, minor = (int(part) for part in __version__.split(".")[:2])
        major_minor = f"{major}.{minor}"
        # 0.x: a minor release may break the API, so the range ends at the next minor.
        core_upper = f"0.{minor + 1}" if major == 0 else f"{major + 1}"
        return {
            "name": self.name,
            "dist": self.dist,
            "package": self.package,
            "ident": self.ident,
            "title": self.title,
            "summary": self.summary,
            "core_version": major_minor,
            "core_upper": core_upper,
            "plugin_api": API_VERSION,
        }


def _templates() -> Traversable:
    return resources.files("keisei_core.scaffold").joinpath("templates")


def _walk(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        path = f"{prefix}{item.name}"
        if item.is_dir():
            found.extend(_walk(item, path + "/"))
        elif item.name.endswith(".tmpl"):
            found.append((path.removesuffix(".tmpl"), item))
    return found


def render(text: str, values: dict[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ScaffoldError(f"template {where} uses unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(substitute, text)


def render_plugin(names: PluginNames) -> dict[str, str]:
    """Relative path -> file content of the whole distribution."""
    values = names.values()
    files: dict[str, str] = {}
    root = _templates()
    for group in ("common", names.kind):
        for relative, template in _walk(root.joinpath(group)):
            target = relative.replace("__package__", names.package)
            files[target] = render(template.read_text(encoding="utf-8"), values, f"{group}/{relative}")
    return files


def write_plugin(names: PluginNames, parent: Path) -> Path:
    """Write the distribution into ``parent/<dist>``; refuses to touch an existing path.

    Files are written into a temporary folder beside the target and renamed into place,
    so an interrupted run leaves either the whole plugin or nothing.
    """
    target = parent / names.dist
    if target.exists() or target.is_symlink():
        raise ScaffoldError(f"{target} already exists; remove it or choose another --dir (nothing was written)")
    if parent.exists() and not parent.is_dir():
        raise ScaffoldError(f"--dir {parent} is not a directory")
    files = render_plugin(names)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{names.dist}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); the plugin is not
        for relative, content in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        os.rename(staging, target)  # fails, rather than merges, if target appeared meanwhile
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ScaffoldError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
