"""Import a plugin object from its target: ``pkg.module``, ``pkg.module:attr`` or ``file.py``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def import_target(target: str, source: str) -> Any:
    if source == "local" and (target.endswith(".py") or "/" in target):
        return _import_file(Path(target))
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name.strip())
    obj: Any = module
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def _import_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such plugin file: {path}")
    module_name = f"keisei_local_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
