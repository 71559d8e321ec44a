"""KEISEI_FUSED_SE_POOL_LIMIT_MB (set by the caller to "lots") fails the op's import with
one FusedSEError, before anything is registered: a second import says the same."""

import importlib

from keisei_plugin_fused_se.errors import FusedSEError

for attempt in (1, 2):
    try:
        importlib.import_module("keisei_plugin_fused_se.ops")
    except FusedSEError as exc:
        assert "KEISEI_FUSED_SE_POOL_LIMIT_MB='lots'" in str(exc), exc
        print(f"import {attempt}: {exc}")
    else:
        raise SystemExit(f"import {attempt}: no FusedSEError")
