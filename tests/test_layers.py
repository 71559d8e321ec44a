"""What each layer of keisei_core may import (docs/architecture.md): checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "keisei_core"

# layer -> core packages it must not import (the layers above it)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bench": ("keisei_core.cli",),
    "compile": ("keisei_core.cli", "keisei_core.bench"),
    "config": ("keisei_core.cli", "keisei_core.bench", "keisei_core.compile"),
    "plugins": ("keisei_core.cli", "keisei_core.bench", "keisei_core.compile"),
    "tracking": ("keisei_core.cli",),
}


# Known calls back up, listed in docs/architecture.md ("Still calling back up"); a new one fails.
KNOWN = {("compile/auto.py", "keisei_core.bench.manifest")}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_no_layer_imports_the_layers_above_it() -> None:
    problems = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((CORE / layer).rglob("*.py")):
            for line, module in _imports(path):
                known = (str(path.relative_to(CORE)), module) in KNOWN
                if not known and any(module == f or module.startswith(f + ".") for f in forbidden):
                    problems.append(f"{path.relative_to(CORE.parent)}:{line} imports {module}")
    assert problems == []


def test_the_bench_layer_reaches_the_compile_layer_by_plain_imports() -> None:
    # No importlib + hasattr probing for a compile layer that is always installed.
    source = (CORE / "bench" / "strategies.py").read_text(encoding="utf-8")
    assert "importlib" not in source and "hasattr(module" not in source


# Foundation modules that every layer may import (the timing primitive is shared by bench
# and compile): they import no layer of the core and no torch.
FOUNDATION = ("stats.py", "timing.py")


def test_the_timing_primitive_sits_below_bench_and_compile() -> None:
    layers = ("keisei_core.bench", "keisei_core.compile", "keisei_core.config", "keisei_core.cli", "keisei_core.plugins")
    problems = [
        f"keisei_core/{name}:{line} imports {module}"
        for name in FOUNDATION
        for line, module in _imports(CORE / name)
        if module == "torch" or module.startswith("torch.") or any(module == f or module.startswith(f + ".") for f in layers)
    ]
    assert problems == []
