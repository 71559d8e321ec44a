"""The CPU kernel's output buffer pool (csrc/buffer_pool.h).

The C++ op allocates its large outputs (the forward's output and the backward's two
activation gradients, 1 MiB and more) through a small caching allocator: when the last
tensor using such a buffer dies, the buffer goes back to the pool, and the next output of
the same size reuses it instead of taking fresh memory from the system. Fresh
multi-megabyte memory page-faults on first write (about 1,350 faults and several
milliseconds for one batch-64 ResTower activation on the development VM, more than the
fused kernel's own time), so a loop of same-shaped calls runs faster on reused buffers.

The pool holds no reference to buffers in use; it keeps only idle ones, at most
:func:`buffer_pool_stats`'s ``limit_bytes`` of them (256 MiB unless set otherwise), and
frees the oldest first. Set the limit with :func:`set_buffer_pool_limit` or, before the
op is imported, the environment variable ``KEISEI_FUSED_SE_POOL_LIMIT_MB`` (0 keeps
nothing: every released buffer is freed at once); free the idle buffers with
:func:`release_buffer_pool`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs
import torch

from keisei_plugin_fused_se.errors import FusedSEError

LIMIT_ENV = "KEISEI_FUSED_SE_POOL_LIMIT_MB"


def _require_cpu_kernels() -> None:
    # Imported here: ops imports this module before it defines anything (to read LIMIT_ENV).
    from keisei_plugin_fused_se.ops import require_kernels

    require_kernels("cpu")


@attrs.frozen
class BufferPoolStats:
    hits: int  # outputs that reused an idle buffer
    misses: int  # pooled-size outputs that took fresh memory
    idle_bytes: int  # memory held for reuse now
    idle_blocks: int
    limit_bytes: int  # most idle memory the pool keeps


def buffer_pool_stats() -> BufferPoolStats:
    """The pool's counters since the process started."""
    _require_cpu_kernels()
    hits, misses, idle_bytes, idle_blocks, limit_bytes = torch.ops.keisei_fused_se.cpu_buffer_pool_stats()
    return BufferPoolStats(hits, misses, idle_bytes, idle_blocks, limit_bytes)


def set_buffer_pool_limit(limit_bytes: int) -> None:
    """Keep at most ``limit_bytes`` of idle buffers (idle ones beyond it are freed now)."""
    _require_cpu_kernels()
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
        raise ValueError(f"buffer pool limit: expected a whole number of bytes >= 0, got {limit_bytes!r}")
    torch.ops.keisei_fused_se.cpu_buffer_pool_set_limit(limit_bytes)


def release_buffer_pool() -> int:
    """Free every idle buffer now; returns the bytes freed. Buffers in use are untouched."""
    _require_cpu_kernels()
    return int(torch.ops.keisei_fused_se.cpu_buffer_pool_release())


def limit_from_environment(environ: Mapping[str, str] = os.environ) -> int | None:
    """The limit in bytes that ``KEISEI_FUSED_SE_POOL_LIMIT_MB`` asks for (None if unset).
    A value that is not a whole number >= 0 is a :class:`FusedSEError` (one line)."""
    raw = environ.get(LIMIT_ENV)
    if raw is None or not raw.strip():
        return None
    try:
        megabytes = int(raw.strip())
    except ValueError:
        megabytes = -1
    if megabytes < 0:
        raise FusedSEError(f"{LIMIT_ENV}={raw!r}: expected a whole number of MiB >= 0 (0 disables the pool)")
    return megabytes << 20
