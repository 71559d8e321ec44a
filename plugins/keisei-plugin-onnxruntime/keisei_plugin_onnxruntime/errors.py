"""Errors of the onnxruntime strategy, all one-line :class:`KeiseiError` subclasses."""

from __future__ import annotations

from keisei_core.plugin import InputError, KeiseiError


class OnnxStrategyError(KeiseiError):
    """The strategy cannot compile this model for the requested cell."""


class OnnxExportError(OnnxStrategyError):
    """torch's ONNX exporter rejected the model."""


class InferenceOnlyError(OnnxStrategyError):
    """Training (train mode, or a training context) was asked of the inference-only session."""


class StaleWeightsError(OnnxStrategyError):
    """The module's weights changed after export, so the ONNX session would give old answers."""


class OnnxInputError(InputError):
    """Observations the exported graph cannot take (device, dtype or per-sample shape)."""
