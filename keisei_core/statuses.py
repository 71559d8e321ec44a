"""The statuses keisei records, as string enums: each compares equal to its text
(``PluginStatus.FAILED == "failed"``) and is written as that text to JSON and tables, so
files and the CLI read as before while code names a status it cannot misspell."""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """A str enum whose ``str()`` and ``format()`` are its value (3.10's StrEnum stand-in)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class PluginStatus(TextEnum):
    """What became of a plugin (``keisei plugins``)."""

    LOADED = "loaded"
    FAILED = "failed"
    DISABLED = "disabled"
    NOT_LOADED = "not-loaded"


class CellStatus(TextEnum):
    """What became of one benchmark cell."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class CompileStatus(TextEnum):
    """What ``compile_model`` did with a strategy (``CompileReport.status``)."""

    COMPILED = "compiled"
    FALLBACK = "fallback"
    FAILED = "failed"
    SKIPPED = "skipped"


class FailureKind(TextEnum):
    """Why a strategy was declined (``skipped``) or rejected (``fallback``/``failed``):
    ``CompileReport.failure.kind``, so callers branch on a value instead of parsing text."""

    UNSUPPORTED_DEVICE = "unsupported-device"
    """A part does not run on the device (or the device is missing, e.g. no CUDA)."""
    UNSUPPORTED_DTYPE = "unsupported-dtype"
    """A part does not support the model's dtype."""
    UNSUPPORTED_MODE = "unsupported-mode"
    """Training was asked for and a part is inference only."""
    APPLY_ERROR = "apply-error"
    """A part's ``apply`` raised (a KeiseiError there is the strategy declining the model)."""
    CONTRACT = "contract"
    """A part returned something that is not an actor-critic with eager's state_dict keys."""
    RUN_ERROR = "run-error"
    """The compiled model raised after applying: the first call, validation, timing."""
    MISMATCH = "mismatch"
    """An output or the gradients differ from eager's beyond the tolerance."""
    DTYPE = "dtype"
    """An output has another dtype, device or shape than eager's."""
    SAMPLING = "sampling"
    """Sampled actions are illegal or do not follow eager's distribution."""
    WEIGHTS = "weights"
    """The compiled model did not follow new weights (stale)."""
    POLICY = "policy"
    """A quantized policy misses its policy-level thresholds."""
    SPEED = "speed"
    """``guard="faster"``: not faster than eager at a declared batch size."""
