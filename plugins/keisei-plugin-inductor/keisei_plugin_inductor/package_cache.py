"""AOTInductor packages on disk with a SHA-256 sidecar: a package is loaded only when the
sidecar written after it vouches for its bytes.

An entry is ``<cache>/<strategy>/<key>.pt2`` and ``<key>.json``. The package is built into
a temporary file and renamed into place (:func:`keisei_core.compile.build_atomically`);
the sidecar (key, SHA-256 and size of the package, what built it) is written last,
atomically. So a package whose build was interrupted between the two writes, one cut
short or altered on disk, or one from another key under the same name is rebuilt, with
one warning naming the file and why, and never handed to ``aoti_load_package`` (which
would crash or, worse, run whatever the bytes say). A missing entry is an ordinary cold
start: no warning.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from keisei_core.plugin import (
    artifact_path,
    build_atomically,
    file_sha256,
    verify_sidecar,
    write_json_atomic,
)


@attrs.frozen
class PackageEntry:
    """The two files of one cache entry."""

    package: Path
    sidecar: Path

    @classmethod
    def for_key(cls, context: Any, strategy: str, key: str) -> PackageEntry:
        package = artifact_path(context, strategy, key, ".pt2")
        return cls(package, package.with_suffix(".json"))


def check_entry(entry: PackageEntry, key: str) -> str:
    """``"ok"`` when the sidecar vouches for the package, else why not (``"absent"``: neither file)."""
    if not entry.package.exists():
        return "absent" if not entry.sidecar.exists() else "the package is missing beside its sidecar"
    if not entry.sidecar.exists():
        return "the package has no sidecar (its build did not finish)"
    _meta, why = verify_sidecar(entry.sidecar, key, {"sha256": entry.package}, what="package")
    return why


def load_or_build(
    entry: PackageEntry,
    key: str,
    build: Callable[[Path], Any],
    facts: Mapping[str, Any],
    *,
    label: str,
) -> tuple[Any, bool, str]:
    """The loaded package runner, whether it came from the cache, and the cache's verdict.

    ``build(temporary_path)`` writes a package (``aoti_compile_and_package``); ``facts``
    go into the sidecar beside the key and the hash. A bad entry is rebuilt with one
    warning; so is a package that hashes right but that ``aoti_load_package`` rejects."""
    verdict = check_entry(entry, key)
    if verdict == "ok":
        try:
            return torch._inductor.aoti_load_package(str(entry.package)), True, verdict
        except Exception as exc:  # bytes that hash right but the loader refuses
            verdict = f"aoti_load_package rejected it ({type(exc).__name__})"
    if verdict != "absent":
        warnings.warn(f"{label}: cached package {entry.package} is not used, {verdict}; rebuilding it", stacklevel=3)
    # Remove the sidecar first: a crash mid-build leaves a package nothing vouches for.
    entry.sidecar.unlink(missing_ok=True)
    start = time.perf_counter()
    build_atomically(entry.package, build)
    seconds = time.perf_counter() - start
    write_json_atomic(entry.sidecar, {
        "key": key,
        "sha256": file_sha256(entry.package),
        "bytes": entry.package.stat().st_size,
        "build_seconds": round(seconds, 3),
        "torch": str(torch.__version__),
        **facts,
    })
    return torch._inductor.aoti_load_package(str(entry.package)), False, verdict
