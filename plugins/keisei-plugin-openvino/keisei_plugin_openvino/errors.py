"""Errors of the openvino strategies, all one-line :class:`KeiseiError` subclasses."""

from __future__ import annotations

from keisei_core.plugin import InputError, KeiseiError


class OpenVinoStrategyError(KeiseiError):
    """The strategy cannot compile this model for the requested cell."""


class OpenVinoConversionError(OpenVinoStrategyError):
    """torch.export or OpenVINO's converter rejected the model."""


class InferenceOnlyError(OpenVinoStrategyError):
    """Training (train mode, or a training context) was asked of the inference-only model."""


class OpenVinoInputError(InputError):
    """Observations the converted graph cannot take (device, dtype or per-sample shape)."""
