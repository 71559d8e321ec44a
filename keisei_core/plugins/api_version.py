"""Whether a plugin's declared ``KEISEI_PLUGIN_API`` fits this keisei-core's plugin API."""

from __future__ import annotations

import re

from keisei_core.hookspecs import API_VERSION

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def _parts(version: str) -> tuple[int, int]:
    match = _VERSION.match(version)
    assert match is not None, version
    return int(match.group(1)), int(match.group(2))


def api_version_problem(declared: object, host_version: str = API_VERSION) -> str | None:
    """None when a plugin declaring ``declared`` may load; else the one-line reason.

    The same major version and a minor version not newer than the host's are compatible
    (minor releases only add names). None (no declaration) is accepted: such plugins
    predate the declaration.
    """
    if declared is None:
        return None
    if not isinstance(declared, str) or not _VERSION.match(declared.strip()):
        return f"KEISEI_PLUGIN_API must be a 'MAJOR.MINOR' string such as {API_VERSION!r}, got {declared!r}"
    major, minor = _parts(declared.strip())
    host_major, host_minor = _parts(host_version)
    if major != host_major:
        return (
            f"written for plugin API {declared} but this keisei-core provides {host_version} "
            f"(major version {major} != {host_major}); install a plugin release built for "
            f"API {host_major}.x or a keisei-core that provides {major}.x"
        )
    if minor > host_minor:
        return (
            f"written for plugin API {declared} but this keisei-core provides only {host_version}; "
            "upgrade keisei-core"
        )
    return None
