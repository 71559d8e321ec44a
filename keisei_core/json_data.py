"""One sanitiser for data written as strict JSON (results files, reports, W&B tables).

Importing this module never imports torch.
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` as strict-JSON data: mappings with string keys, lists for any sequence or
    set, finite numbers; NaN, infinities and anything else become their ``str``.

    Strict because ``json.dump(..., allow_nan=False)`` (what keisei's atomic writer uses)
    rejects NaN and infinity, which other readers of the file would choke on anyway.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)
