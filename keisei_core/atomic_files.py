"""Atomic file writes: a file appears under its final name complete, or not at all.

Results, checkpoints, AOT packages and ONNX exports are all written the same way: to a
temporary file in the destination folder (so the rename stays on one file system), flushed
and fsynced, then renamed over the destination with ``os.replace``. A crash, a full disk or
Ctrl-C in the middle leaves the previous file (if any) untouched and no half-written one;
the temporary file is removed on every failure path.

A process killed outright (SIGKILL, power loss) runs no cleanup, so its temporary file
stays. Temporaries are therefore named ``.<name>.keisei-<host>-<pid>.<random><suffix>``,
and every atomic write removes the temporaries in its folder that this host's processes
left behind and whose process no longer exists (a live process's file, or another host's,
is never touched).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_MARK = "keisei"


def _host_tag() -> str:
    # One path component, no dots: the marker must parse back unambiguously.
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


_TEMPORARY = re.compile(rf"^\..+\.{TEMP_MARK}-(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[^.]+(\.[^.]+)?$")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of atomic writes in ``folder`` whose writer (a process on this
    host) has died; returns what was removed."""
    removed: list[Path] = []
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match.group("host") != host:
            continue
        pid = int(match.group("pid"))
        if pid == os.getpid() or _process_exists(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _temporary_beside(path: Path, suffix: str) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    prefix = f".{path.name}.{TEMP_MARK}-{_host_tag()}-{os.getpid()}."
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    return fd, Path(name)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (an exporter,
    a packager); renamed to ``path`` when the block ends without an exception.

    ``suffix`` lets tools that look at extensions (``.pt2``, ``.onnx``) see the right one.
    """
    target = Path(path)
    fd, temporary = _temporary_beside(target, suffix)
    os.close(fd)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        _remove_quietly(temporary)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO[Any]]:
    """An open handle on a temporary file beside ``path``; flushed, fsynced and renamed to
    ``path`` when the block ends without an exception."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    fd, temporary = _temporary_beside(target, ".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        _remove_quietly(temporary)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as strict JSON (no NaN or infinity) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, allow_nan=False)
        handle.write("\n")
