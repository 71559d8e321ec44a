"""Per-tensor SHA-256 checksums of a keisei checkpoint's weights.

Written by :func:`keisei_core.checkpoints.store.save_checkpoint` under ``"checksums"``::

    {"algorithm": "sha256", "tensors": {"conv.weight": "<hex>", ...}}

Each digest covers the tensor's dtype, shape and raw bytes, so a flipped byte in a
tensor's data, a changed shape or dtype is found at load; a checkpoint without the entry
(an older keisei, or a foreign file) is reported as carrying none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keisei_core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

CHECKSUMS_KEY = "checksums"
ALGORITHM = "sha256"
# Keys a mismatch message names before it only counts.
SHOWN = 3


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of ``dtype``, ``shape`` and the bytes of a (CPU) tensor."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest = hashlib.sha256(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def checksums_of(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "tensors": {key: tensor_digest(value) for key, value in state_dict.items()}}


def verify_checksums(state_dict: Any, recorded: Any, where: str) -> str:
    """Compare ``state_dict`` with the recorded digests; one CheckpointError naming the
    first tensors that differ. Returns what was checked."""
    if (
        not isinstance(recorded, Mapping)
        or recorded.get("algorithm") != ALGORITHM
        or not isinstance(recorded.get("tensors"), Mapping)
        or not isinstance(state_dict, Mapping)
    ):
        raise CheckpointError(f"{where}: its '{CHECKSUMS_KEY}' entry is malformed; the file is damaged")
    digests = recorded["tensors"]
    missing = [k for k in state_dict if k not in digests]
    extra = [k for k in digests if k not in state_dict]
    changed = [k for k in state_dict if k in digests and tensor_digest(state_dict[k]) != digests[k]]
    if missing or extra or changed:
        parts = []
        for label, keys in (("changed", changed), ("without a checksum", missing), ("missing", extra)):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > SHOWN else ""
                parts.append(f"{label}: {', '.join(keys[:SHOWN])}{more}")
        raise CheckpointError(
            f"{where} is damaged: tensors do not match the SHA-256 checksums written at save "
            f"({'; '.join(parts)}); nothing was loaded"
        )
    return f"SHA-256 of {len(digests)} tensors (written at save)"
