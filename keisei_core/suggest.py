"""Closest-name suggestions for unknown names (``did you mean ...``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """Names from ``candidates`` that look like ``name``, best first."""
    pool = sorted(set(candidates))
    found = difflib.get_close_matches(name, pool, n=limit, cutoff=0.6)
    if not found:
        # Prefix and substring matches catch 'rest' -> 'restower' that ratios miss.
        found = [c for c in pool if c.startswith(name) or name in c][:limit]
    return found


def unknown_name_message(kind: str, name: str, candidates: Iterable[str]) -> str:
    """``unknown model 'restowr'; did you mean 'restower'?`` (or the list of known names)."""
    pool = sorted(set(candidates))
    close = closest_names(name, pool)
    if close:
        quoted = " or ".join(f"'{c}'" for c in close)
        return f"unknown {kind} '{name}'; did you mean {quoted}?"
    if pool:
        shown = ", ".join(pool[:12]) + (", ..." if len(pool) > 12 else "")
        return f"unknown {kind} '{name}'; known: {shown}"
    return f"unknown {kind} '{name}'; none are registered"
