"""One sanitiser for data written as strict JSON (results files, reports, W&B tables).

Importing this module never imports torch.
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any, *, non_finite: str = "text", replaced: list[str] | None = None, path: str = "") -> Any:
    """``value`` as strict-JSON data: mappings with string keys, lists for any sequence or
    set, finite numbers; anything else becomes its ``str``.

    NaN and infinities become their text (``non_finite="text"``: reports, where the value
    still says something) or null (``"null"``: results files, whose numbers readers
    aggregate); with ``replaced`` given, each one is listed there as
    ``"path.to.key: inf written as null"`` (``path`` prefixes the paths).

    Strict because ``json.dump(..., allow_nan=False)`` (what keisei's atomic writer uses)
    rejects NaN and infinity, which other readers of the file would choke on anyway.
    """
    if non_finite not in ("text", "null"):
        raise ValueError(f"non_finite must be 'text' or 'null', got {non_finite!r}")

    def walk(item: Any, where: str) -> Any:
        if isinstance(item, dict):
            return {str(key): walk(v, f"{where}.{key}" if where else str(key)) for key, v in item.items()}
        if isinstance(item, list | tuple | set | frozenset):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(item)]
        if item is None or isinstance(item, bool | int | str):
            return item
        if isinstance(item, float):
            if math.isfinite(item):
                return item
            if replaced is not None:
                written = "null" if non_finite == "null" else "text"
                replaced.append(f"{where or 'value'}: {item} written as {written}")
            return None if non_finite == "null" else str(item)
        return str(item)

    return walk(value, path)
