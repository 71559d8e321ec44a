"""Checkpoints: reading Keisei weights in the forms found in the wild, loading all or nothing.

Importing this package does not import torch (the functions do, when called).
"""

from keisei_core.checkpoints.state_dicts import (
    COMPILE_PREFIX,
    WRAPPER_KEY,
    LoadedStateDict,
    StateDictMismatch,
    compare_state_dict,
    load_into,
    load_weights,
    read_state_dict,
    strip_compile_prefix,
    torch_load,
    unwrap_compiled,
    unwrap_state_dict,
)

__all__ = [
    "COMPILE_PREFIX",
    "WRAPPER_KEY",
    "LoadedStateDict",
    "StateDictMismatch",
    "compare_state_dict",
    "load_into",
    "load_weights",
    "read_state_dict",
    "strip_compile_prefix",
    "torch_load",
    "unwrap_compiled",
    "unwrap_state_dict",
]
