"""Reading and writing TOML (tomllib on 3.11+, tomli before)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tomli_w

from keisei_core.errors import ConfigError
from keisei_core.oneline import one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["MAX_DEPTH", "check_depth", "dump_toml", "read_toml", "tomllib"]

# Tables and arrays nested deeper than this are refused: no keisei setting needs more than
# a few levels, and every later step (typing, fingerprints, JSON, W&B) walks values
# recursively, so a few hundred levels would end in RecursionError far from the file.
MAX_DEPTH = 32


def check_depth(data: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """One ConfigError naming the key path where ``data`` nests deeper than ``limit``."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > limit:
            raise ConfigError(
                f"{where}: {path or 'value'}: values nested more than {limit} levels deep (tables "
                "and arrays inside each other); no setting needs that"
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            shown = path.split("[", 1)[0] + "[...]" if "[" in path else f"{path}[...]"
            stack.extend((v, depth + 1, shown) for v in value)


def read_toml(path: str | Path, label: str | None = None) -> dict[str, Any]:
    """Parse a TOML file; errors name ``label`` (default: the path)."""
    path = Path(path)
    where = label or str(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except RecursionError:
        raise ConfigError(
            f"{where}: values nested more than {MAX_DEPTH} levels deep (tables and arrays inside each "
            "other; too deep for the TOML parser); no setting needs that"
        ) from None
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {one_line(exc, with_type=False)}") from None
    check_depth(data, where)
    return data


def _drop_none(value: Any) -> Any:
    # TOML has no null: leave unset optional keys out of the rendering.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def dump_toml(data: dict[str, Any]) -> str:
    return tomli_w.dumps(_drop_none(data))
