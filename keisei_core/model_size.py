"""How big a model would be, found without allocating it (built on torch's meta device).

A recipe such as ``conv_channels = 10**12`` passes every type check; building it for
real ends in the allocator's RuntimeError, or in the OOM killer. Config checks and
checkpoint loading build it on the meta device first (shapes only, no memory) and refuse
it with one line when its tensors would not fit in this machine's memory.
"""

from __future__ import annotations

import os
from typing import Any

from keisei_core.errors import ConfigError


def memory_limit_bytes() -> int:
    """This machine's physical memory (the most a model's tensors could ever take)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 40


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover


def meta_size_bytes(spec: Any, options: Any) -> int | None:
    """Bytes of the model's parameters and buffers, built on the meta device; None when the
    builder cannot run there (it needs real tensors: the real build decides then)."""
    import torch

    from keisei_core.models import build_from_spec

    try:
        with torch.device("meta"):
            shadow = build_from_spec(spec, options)
    except Exception:
        return None
    return sum(t.numel() * t.element_size() for t in shadow.state_dict().values())


def check_model_size(spec: Any, options: Any, where: str) -> None:
    """One ConfigError when the model's tensors would not fit in memory."""
    needed = meta_size_bytes(spec, options)
    limit = memory_limit_bytes()
    if needed is not None and needed > limit:
        raise ConfigError(
            f"{where}: model '{spec.name}' would need {format_bytes(needed)} for its weights, more "
            f"than this machine's {format_bytes(limit)} of memory (check its size options)"
        )
