"""``int8``: post-training static quantization with PyTorch 2 export (PT2E), lowered by
Inductor to oneDNN int8 convolutions and matmuls (VNNI / AMX-INT8 on x86 CPUs).

The flow is torchao's (``torch.ao.quantization.quantize_pt2e`` moved there; torch 2.13
has none): ``torch.export`` the eval-mode forward with a dynamic batch dimension,
``prepare_pt2e`` with the ``X86InductorQuantizer`` (uint8 activations per tensor, int8
weights per output channel: oneDNN's int8 layout), calibrate the observers on
observation-like positions, ``convert_pt2e``, then ``torch.compile`` with freezing,
whose passes (registered by torchao's X86 quantizer module) fold the quantize/dequantize
pairs into oneDNN ``qconv``/``qlinear`` calls with pre-packed int8 weights.

Calibration: 256 positions from :func:`keisei_core.observations.make_observations` at
four board occupancies (opening to endgame), or the user's own positions: a tensor file
``(N, C, H, W)`` saved with ``torch.save`` and named by ``KEISEI_INT8_CALIBRATION`` (or
``int8_strategy(calibration=...)``). Calibration sees what the policy will see; random
noise would set activation ranges that real positions never reach.

Like ``aot-inductor`` the model keeps its float parameters (state_dict keys as eager)
and gets a wrapped ``forward`` that runs the quantized program, so the PPO methods run
int8 code; ``load_state_dict`` marks the program stale and the next call quantizes the
new weights again with the same calibration positions. Inference only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.plugin import (
    InputError,
    StrategyContext,
    StrategySpec,
    add_forward_wrapper,
    forward_wrappers,
    make_observations,
)
from keisei_plugin_inductor.exported import export_dynamic, mark_stale_on_load, steps_aside

CALIBRATION_ENV = "KEISEI_INT8_CALIBRATION"
CALIBRATION_OCCUPANCIES = (0.2, 0.4, 0.6, 0.8)
CALIBRATION_BATCH = 64
# Far from the validation inputs' seeds (keisei_core.compile.equivalence.make_check_inputs):
# the positions a quantized model is judged on are never the ones it was calibrated on.
CALIBRATION_SEED = 7_000_003


def _bits(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 8:
        raise InputError(f"{attribute.name} must be an integer from 2 to 8, got {value!r}")


@attrs.frozen
class QuantizeSettings:
    """How to quantize. ``int8`` is 8 and 8 bits; fewer bits keep the int8 kernels but
    clamp to a narrower range (the tests' deliberately over-quantized strategy)."""

    activation_bits: int = attrs.field(default=8, validator=_bits)
    weight_bits: int = attrs.field(default=8, validator=_bits)
    calibration: Path | torch.Tensor | None = attrs.field(default=None, eq=False)


@contextlib.contextmanager
def _quiet_torchao_import() -> Any:
    # torchao's wheel carries CUDA extensions; on a CPU torch each one logs a "Failed to
    # load" warning at import (harmless: PT2E needs none of them). Keep them off the terminal.
    names = ("torchao", "torch.utils._pytree")
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _x86_quantizer_module() -> Any:
    with _quiet_torchao_import():
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer

    return x86_inductor_quantizer


def quantization_config(settings: QuantizeSettings) -> Any:
    """The X86 Inductor quantizer's default config, narrowed to ``settings``' bit widths
    (the observers then pick scales for the narrower range)."""
    import dataclasses

    config = _x86_quantizer_module().get_default_x86_inductor_quantization_config()
    if (settings.activation_bits, settings.weight_bits) == (8, 8):
        return config
    activation = dataclasses.replace(config.input_activation, quant_max=2**settings.activation_bits - 1)
    limit = 2 ** (settings.weight_bits - 1) - 1
    weight = dataclasses.replace(config.weight, quant_min=-limit, quant_max=limit)
    return dataclasses.replace(config, input_activation=activation, output_activation=activation, weight=weight)


def has_int8_dot_product() -> bool:
    """Whether the CPU has VNNI (AVX512_VNNI, AVX_VNNI) or AMX-INT8. Without them oneDNN's
    u8 x s8 convolutions sum pairs of products in saturating 16-bit lanes (vpmaddubsw),
    which clips large activations: measured on an AVX2-only AMD EPYC (Zen 3), the lowered
    int8 ResTower was 0.45-0.86 off the converted graph it was compiled from."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def default_calibration(shape: tuple[int, int, int]) -> torch.Tensor:
    channels, board, _ = shape
    batches = [
        make_observations(CALIBRATION_BATCH, channels, board, seed=CALIBRATION_SEED + index, occupancy=occupancy)
        for index, occupancy in enumerate(CALIBRATION_OCCUPANCIES)
    ]
    return torch.cat(batches)


def load_calibration(source: Path | torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """The user's calibration positions, checked against the model's observation shape."""
    where = "calibration tensor" if isinstance(source, torch.Tensor) else f"calibration file {str(source)!r}"
    if isinstance(source, torch.Tensor):
        positions = source
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{where} does not exist ({CALIBRATION_ENV} or int8_strategy(calibration=...))")
        try:
            positions = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"{where} is not a tensor saved with torch.save: {type(exc).__name__}") from None
    if not isinstance(positions, torch.Tensor):
        raise InputError(f"{where} must hold one tensor (N, C, H, W), got {type(positions).__name__}")
    if positions.dim() != 4 or tuple(positions.shape[1:]) != shape or positions.shape[0] < 1:
        raise InputError(f"{where} must have shape (N, {', '.join(map(str, shape))}), got {tuple(positions.shape)}")
    if not positions.is_floating_point() or not bool(torch.isfinite(positions).all()):
        raise InputError(f"{where} must hold finite floating-point observations")
    return positions.detach().to(torch.float32).cpu()


class Int8Program:
    """The quantized program a module runs (``torch.compile`` of the converted PT2E graph),
    and how to build it again; :class:`keisei_plugin_inductor.int8_package.Int8Package`
    is the cached, ahead-of-time compiled variant."""

    strategy = "int8"

    def __init__(
        self, context: StrategyContext, settings: QuantizeSettings, wrappers: tuple[Any, ...] = ()
    ) -> None:
        example = context.example_obs
        if example is None:
            raise InputError(f"{self.strategy} needs an example observation to export with")
        self.shape: tuple[int, int, int] = tuple(int(s) for s in example.shape[1:])  # type: ignore[assignment]
        self.settings = settings
        source = settings.calibration if settings.calibration is not None else os.environ.get(CALIBRATION_ENV) or None
        self.calibration_source = "make_observations" if source is None else (
            "tensor" if isinstance(source, torch.Tensor) else str(source)
        )
        self.positions = default_calibration(self.shape) if source is None else load_calibration(
            source if isinstance(source, torch.Tensor) else Path(source), self.shape
        )
        # What a rebuild needs, not the caller's notes or its (maybe large) example.
        self.context = attrs.evolve(context, notes={}, example_obs=None)
        self.wrappers = wrappers  # the forward wrappers (transforms) inside the program
        self.compiled: Callable[..., Any] | None = None
        self.stale = True
        self.exporting = False
        self.builds = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Int8Program:
        # The compiled program is read-only and shared; a copy loading other weights marks
        # only its own program stale. Not copy.copy: that goes through __getstate__, which
        # drops the program, and the copy would quantize and compile again on its first call.
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        memo[id(self)] = twin
        return twin

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["compiled"] = None
        state["stale"] = True  # quantize again after unpickling
        return state

    @property
    def ready(self) -> bool:
        return self.compiled is not None and not self.stale

    def example(self) -> torch.Tensor:
        """Two calibration positions: a batch-1 example would specialise the batch dimension."""
        return self.positions[:2] if self.positions.shape[0] >= 2 else self.positions.expand(2, *self.shape)

    def quantized(self, module: nn.Module) -> Any:
        """Export, calibrate and convert the module's current weights: the PT2E graph with
        quantize/dequantize pairs around every convolution and linear layer."""
        x86 = _x86_quantizer_module()  # imported first: it registers the int8 lowering passes
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        exported = export_dynamic(module, self.example(), self).module()
        quantizer = x86.X86InductorQuantizer()
        quantizer.set_global(quantization_config(self.settings))
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for batch in self.positions.split(CALIBRATION_BATCH):
                prepared(batch)
        return convert_pt2e(prepared)

    def facts(self) -> dict[str, Any]:
        """What the compile report's notes say about the last build."""
        return {"int8_dot_product": has_int8_dot_product()}  # False: expect the policy checks to miss

    def ensure(self, module: nn.Module) -> bool:
        """Build the program for the module's current weights; returns whether an earlier
        build was reused (never, here: nothing is kept between processes)."""
        self.compiled = torch.compile(self.quantized(module), dynamic=True)
        self.stale = False
        self.builds += 1
        return False

    def run(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert self.compiled is not None
        # Freezing must be on whenever Inductor compiles (first call, a new batch bucket): its
        # passes turn the quantize/dequantize pairs into oneDNN int8 ops. Passed as a
        # torch.compile option instead, the int8 weight pre-packing is traced with fake
        # tensors and fails (torch 2.13, torchao 0.18). Set and restored by hand: at batch 1
        # config.patch() costs about 4x as much per call (measured 310-370 us vs 75-85 us on
        # the loaded 2-core machine).
        config = torch._inductor.config
        before = config.freezing
        config.freezing = True
        try:
            with torch.no_grad():
                # (logits, value) and, for a multi-head model, its extra heads.
                outputs = tuple(self.compiled(obs))
        finally:
            config.freezing = before
        return outputs


def int8_forward(
    module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, program: Int8Program, **kwargs: Any
) -> Any:
    if steps_aside(program.strategy, module, program, args, kwargs):  # torch.export is tracing
        return inner(obs, *args, **kwargs)
    if not program.ready:
        program.ensure(module)
    return tuple(output.to(obs.dtype) for output in program.run(obs.to(torch.float32)))


def quantize_int8(
    model: nn.Module, context: StrategyContext, settings: QuantizeSettings | None = None, *, aot: bool = False
) -> nn.Module:
    """``int8`` (``aot=False``: torch.compile, built in every process) or ``int8-aot``
    (an AOTInductor package cached on disk, see :mod:`keisei_plugin_inductor.int8_package`)."""
    from keisei_plugin_inductor.compilers import use_keisei_cache

    settings = settings or QuantizeSettings()
    use_keisei_cache(context)
    model.eval()
    if aot:
        from keisei_plugin_inductor.int8_package import Int8Package

        program: Int8Program = Int8Package(context, settings, forward_wrappers(model))
    else:
        program = Int8Program(context, settings, forward_wrappers(model))
    program.ensure(model)
    for key, value in program.facts().items():
        context.record(key, value)
    context.record("int8_calibration", f"{program.calibration_source}: {program.positions.shape[0]} positions")
    if (settings.activation_bits, settings.weight_bits) != (8, 8):
        context.record("int8_bits", f"activations {settings.activation_bits}, weights {settings.weight_bits}")
    add_forward_wrapper(model, functools.partial(int8_forward, program=program))
    mark_stale_on_load(model, "program", Int8Program)
    return model


def int8_strategy(
    name: str = "int8-calibrated",
    *,
    calibration: Path | str | torch.Tensor | None = None,
    activation_bits: int = 8,
    weight_bits: int = 8,
    aot: bool = False,
    description: str = "",
) -> StrategySpec:
    """An ``int8``-like strategy with its own calibration positions (a tensor or a
    ``torch.save`` file of ``(N, C, H, W)`` observations) or bit widths, for
    ``compile_model(model, int8_strategy(calibration="positions.pt"))`` or a plugin's
    ``register``; ``aot=True`` builds it as ``int8-aot`` does (a package cached on disk,
    keyed by the calibration positions too)."""
    source = Path(calibration) if isinstance(calibration, str) else calibration
    settings = QuantizeSettings(activation_bits, weight_bits, source)
    kind = "AOTInductor package, cached on disk" if aot else "torch.compile"
    return StrategySpec(
        name=name,
        apply=functools.partial(quantize_int8, settings=settings, aot=aot),
        description=description or (
            f"int8 PT2E quantization ({activation_bits}-bit activations, {weight_bits}-bit weights; {kind})"
        ),
        devices={"cpu"},
        dtypes={"float32"},
        training=False,
        precision="int8",
        frozen_weights=True,
    )
