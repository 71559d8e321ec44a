"""The dtypes keisei runs in, by name: one map between config names and torch dtypes.

Importing this module never imports torch; the functions import it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keisei_core.errors import InputError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16")
"""Every dtype a config, a strategy or a probe may name, widest first."""


def torch_dtype(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16``; an unknown name is one :class:`InputError`."""
    import torch

    if name not in DTYPE_NAMES:
        raise InputError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPE_NAMES)}")
    value = getattr(torch, name)
    assert isinstance(value, torch.dtype)
    return value


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (any torch dtype, not only :data:`DTYPE_NAMES`)."""
    return str(dtype).removeprefix("torch.")
