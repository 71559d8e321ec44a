"""The ``peers`` probe's ``[probe_options.peers]`` table (no torch: the config check loads it).

``strategies``: keisei strategy names to time (names not installed become skipped rows,
so a config may list ``int8`` before its plugin is installed). ``peers``: a subset of
:data:`PEERS`. ``validation_batch_sizes``: the batch sizes ``compile_model`` validates
each strategy at (one per shape bucket the benchmark's batch sizes use).
``emulated_precisions``: also time keisei strategies and peak kernels in a precision this
CPU only emulates (bfloat16 without AVX-512-BF16/AMX: the default ResTower ran 33x slower
than float32 on an AVX2 Zen 3, so a batch-256 row would take minutes per call); off by
default, such rows are skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import attrs

DEFAULT_STRATEGIES = (
    "bf16",
    "channels-last+bf16+inductor-freeze",
    "onnxruntime",
    "openvino",
    "openvino-bf16",
    "int8",
    "int8-aot",
    "openvino-int8",
)
PEERS = (
    "onnxruntime-session",
    "openvino-latency-f32",
    "openvino-latency-bf16",
    "openvino-throughput-f32",
    "openvino-throughput-bf16",
    "openvino-latency-int8",
    "openvino-throughput-int8",
)


def _names(_instance: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{attribute.name} must be a list of names, got {list(value)!r}")


def _known_peers(_instance: Any, _attribute: attrs.Attribute[Any], value: list[str]) -> None:
    bad = [p for p in value if p not in PEERS]
    if bad:
        raise ValueError(f"unknown peer(s) {bad}; known: {list(PEERS)}")


def _batch_sizes(_instance: Any, _attribute: attrs.Attribute[Any], value: list[int]) -> None:
    if not value or not all(isinstance(s, int) and s >= 1 for s in value):
        raise ValueError(f"validation_batch_sizes must be a non-empty list of positive integers, got {list(value)!r}")


@attrs.frozen
class PeerOptions:
    # Lists, not tuples: the core's converter refuses a string where a list is expected
    # (a tuple[str, ...] would take "bf16" as four names).
    strategies: list[str] = attrs.field(factory=lambda: list(DEFAULT_STRATEGIES), validator=_names)
    peers: list[str] = attrs.field(factory=lambda: list(PEERS), validator=[_names, _known_peers])
    validation_batch_sizes: list[int] = attrs.field(factory=lambda: [1, 64], validator=_batch_sizes)
    emulated_precisions: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
