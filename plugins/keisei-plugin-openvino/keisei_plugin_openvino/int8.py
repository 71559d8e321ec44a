"""``openvino-int8``: the converted float32 OpenVINO model quantized after training by NNCF
(``nncf.quantize``), calibrated on observation-like positions, run by the CPU plugin's
int8 kernels.

NNCF (the ``nncf`` package, pure Python; it requires no torch) inserts ``FakeQuantize``
operations on the OpenVINO model with the default ``PERFORMANCE`` preset (symmetric
int8 weights per output channel and activations per tensor, from the statistics of the
calibration positions, with fast bias correction); OpenVINO's CPU plugin folds them into
int8 convolutions. Operations NNCF leaves in float run with ``INFERENCE_PRECISION_HINT=f32``
(not the CPU's bf16 default), so what this strategy changes is int8 and nothing else.

Calibration: 256 positions of :func:`keisei_core.observations.make_observations` at board
occupancies 0.2-0.8 with seeds far from the validation inputs', like keisei's ``int8``.
The quantized IR is cached as ``openvino``'s is (``<cache>/openvino-int8/<key>.xml``, the
key naming NNCF's version, the preset and the calibration as well).

Validated by ``compile_model`` at the policy level (``precision="int8"``: KL of the
masked policy, top-1 agreement, value error, legality), like keisei's ``int8``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import time
from typing import Any

import torch
from torch import nn

from keisei_core.plugin import StrategyContext, make_observations
from keisei_plugin_openvino.runtime import OpenVinoRunner

STRATEGY = "openvino-int8"
CALIBRATION_OCCUPANCIES = (0.2, 0.4, 0.6, 0.8)
CALIBRATION_BATCH = 16  # positions per NNCF calibration item
CALIBRATION_POSITIONS = 256
CALIBRATION_SEED = 7_100_003  # far from the validation inputs' seeds
PRESET = "PERFORMANCE"


def nncf_version() -> str:
    from importlib.metadata import version

    return version("nncf")


def calibration_positions(observation: tuple[int, int, int]) -> torch.Tensor:
    channels, board, width = observation
    if board != width:
        from keisei_plugin_openvino.errors import OpenVinoInputError

        raise OpenVinoInputError(f"cannot synthesise calibration positions for a {board}x{width} board")
    per = CALIBRATION_POSITIONS // len(CALIBRATION_OCCUPANCIES)
    return torch.cat([
        make_observations(per, channels, board, seed=CALIBRATION_SEED + index, occupancy=occupancy)
        for index, occupancy in enumerate(CALIBRATION_OCCUPANCIES)
    ])


def quantize_model(converted: Any, positions: torch.Tensor) -> Any:
    """``nncf.quantize`` of a float32 ``openvino.Model`` on ``positions`` (N, C, H, W)."""
    import nncf

    # NNCF logs its statistics at INFO; keep them off the terminal.
    logging.getLogger("nncf").setLevel(logging.WARNING)
    items = [batch.numpy() for batch in positions.split(CALIBRATION_BATCH)]
    dataset = nncf.Dataset(items)
    # Its progress bars (rich, on the console's file: sys.stdout) go to stderr, where
    # progress belongs: stdout is the data of `keisei tune --json` and `keisei validate --json`.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            converted, dataset, preset=getattr(nncf.QuantizationPreset, PRESET), subset_size=len(items)
        )


class OpenVinoInt8Runner(OpenVinoRunner):
    """``openvino``'s runner whose conversion ends with NNCF's quantization."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.positions = calibration_positions(self.observation)
        digest = hashlib.sha256(self.positions.numpy().tobytes()).hexdigest()
        self.calibration = f"make_observations: {self.positions.shape[0]} positions"
        self._key_extra = {"nncf": nncf_version(), "preset": PRESET, "calibration": digest}

    def __repr__(self) -> str:  # stable: wrapper names enter artifact keys
        return f"OpenVinoInt8Runner({self.strategy})"

    def key_extra(self) -> dict[str, Any]:
        return dict(self._key_extra)

    def _convert(self, module: nn.Module) -> tuple[Any, float]:
        converted, seconds = super()._convert(module)
        start = time.perf_counter()
        quantized = quantize_model(converted, self.positions)
        # convert_seconds (in the report and the sidecar) is the cold build: both steps.
        return quantized, seconds + (time.perf_counter() - start)


def apply_openvino_int8(model: nn.Module, context: StrategyContext) -> nn.Module:
    from keisei_plugin_openvino.strategy import apply_openvino

    model = apply_openvino(model, context, strategy=STRATEGY, runner_class=OpenVinoInt8Runner)
    context.record("int8_calibration", f"make_observations: {CALIBRATION_POSITIONS} positions")
    context.record("nncf_version", nncf_version())
    return model
