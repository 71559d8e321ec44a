"""KEISEI_FUSED_SE_POOL_LIMIT_MB (set by the caller to 16) is applied when the op loads."""

import keisei_plugin_fused_se.ops  # noqa: F401  (loads the library, applies the limit)
from keisei_plugin_fused_se.buffer_pool import buffer_pool_stats

limit = buffer_pool_stats().limit_bytes
if limit != 16 << 20:
    raise SystemExit(f"limit is {limit} bytes, expected 16 MiB")
print("limit 16 MiB")
