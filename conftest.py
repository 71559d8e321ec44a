"""Session-wide test settings for the core and every plugin's tests."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, settings

# Compiles are slow on a 2-core CPU: no per-example deadline; equivalence tests choose
# their own max_examples. CI (CI=true) runs the same examples every time.
settings.register_profile(
    "keisei",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
settings.load_profile("keisei")

# Tests never talk to W&B servers and share one artifact cache per session, so compiled
# artifacts (inductor's FX cache, AOT packages, ONNX files) are reused within the run.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
_session_cache = tempfile.mkdtemp(prefix="keisei-test-cache-")
os.environ.setdefault("KEISEI_CACHE_DIR", _session_cache)
