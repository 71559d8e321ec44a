"""What each layer of keisei_core may import (docs/architecture.md): checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "keisei_core"

# layer -> core packages it must not import (the layers above it)
ABOVE_FOUNDATION = (
    "keisei_core.plugins", "keisei_core.models", "keisei_core.config", "keisei_core.compile",
    "keisei_core.bench", "keisei_core.tracking", "keisei_core.testing", "keisei_core.cli",
)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bench": ("keisei_core.cli",),
    "compile": ("keisei_core.cli", "keisei_core.bench"),
    # The config layer reads and types files; checks against the registries live in bench.
    "config": ("keisei_core.cli", "keisei_core.bench", "keisei_core.compile", "keisei_core.plugins",
               "keisei_core.models"),
    "plugins": ("keisei_core.cli", "keisei_core.bench", "keisei_core.compile"),
    "tracking": ("keisei_core.cli",),
    # foundation modules (single files at the package root)
    "environment.py": ABOVE_FOUNDATION,
    "serialization.py": ABOVE_FOUNDATION,
    "statuses.py": ABOVE_FOUNDATION,
    "oneline.py": ABOVE_FOUNDATION,
    "json_data.py": ABOVE_FOUNDATION,
}


# Known calls back up, listed in docs/architecture.md ("Still calling back up"); a new one fails.
KNOWN: set[tuple[str, str]] = set()


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
        paths = [CORE / layer] if layer.endswith(".py") else sorted((CORE / layer).rglob("*.py"))
        for path in paths:
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
