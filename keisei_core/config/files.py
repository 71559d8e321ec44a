"""Reading and writing TOML (tomllib on 3.11+, tomli before)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tomli_w

from keisei_core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["dump_toml", "read_toml", "tomllib"]


def read_toml(path: str | Path, label: str | None = None) -> dict[str, Any]:
    """Parse a TOML file; errors name ``label`` (default: the path)."""
    path = Path(path)
    where = label or str(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {' '.join(str(exc).split())}") from None


def _drop_none(value: Any) -> Any:
    # TOML has no null: leave unset optional keys out of the rendering.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def dump_toml(data: dict[str, Any]) -> str:
    return tomli_w.dumps(_drop_none(data))
