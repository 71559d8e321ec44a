"""The declared plugin API: everything a keisei plugin imports from the core, in one module.

A plugin imports only this module::

    from keisei_core.plugin import ModelSpec, ModelRegister, hookimpl

    KEISEI_PLUGIN_API = "1.2"   # the API version this plugin was written against

    @hookimpl
    def keisei_register_models(register: ModelRegister) -> None:
        register(ModelSpec("my-net", build="my_plugin.network:build", options=MyOptions))

Importing this module never imports torch. The names that need torch (the actor-critic
mixin, the SE building blocks, compile and timing helpers) are listed in ``_LAZY`` and
load on first access, so a plugin module can import them inside its functions, or at the
top of the submodules that only run once torch is needed anyway.

Versioning: :data:`API_VERSION` is ``"MAJOR.MINOR"``. A minor release only adds names;
a major release may remove or change them. The host loads a plugin whose declared
``KEISEI_PLUGIN_API`` has the host's major version and a minor version not newer than the
host's; any other plugin is listed as failed with the reason. A plugin that declares no
version is loaded as before (it predates the declaration).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keisei_core.commands_spec import CommandContext, CommandSpec
from keisei_core.dtypes import DTYPE_NAMES, dtype_name, torch_dtype
from keisei_core.errors import (
    CheckpointError,
    ConfigError,
    InputError,
    KeiseiError,
    PluginError,
    UnknownNameError,
)
from keisei_core.hookspecs import API_VERSION, hookimpl
from keisei_core.import_strings import ImportString
from keisei_core.lazy import lazy_attributes
from keisei_core.oneline import one_line
from keisei_core.specs import ModelSpec, NoOptions, ProbeSpec, StrategyContext, StrategySpec
from keisei_core.statuses import CompileStatus, FailureKind

if TYPE_CHECKING:  # the lazy names, typed for mypy and editors
    from torch import nn

    from keisei_core.actor_critic import (
        ActorCriticMixin as ActorCriticMixin,
    )
    from keisei_core.api import (
        build_model as build_model,
    )
    from keisei_core.atomic_files import (
        write_bytes_atomic as write_bytes_atomic,
    )
    from keisei_core.atomic_files import (
        write_json_atomic as write_json_atomic,
    )
    from keisei_core.bench.builtin_probes import (
        calibrate_peak as calibrate_peak,
    )
    from keisei_core.bench.builtin_probes import (
        forward_flops_per_sample as forward_flops_per_sample,
    )
    from keisei_core.bench.child import (
        apply_cell_strategy as apply_cell_strategy,
    )
    from keisei_core.bench.child import (
        build_probe_context as build_probe_context,
    )
    from keisei_core.bench.child import (
        child_main as child_main,
    )
    from keisei_core.bench.child import (
        current_rss_bytes as current_rss_bytes,
    )
    from keisei_core.bench.child import (
        peak_rss_bytes as peak_rss_bytes,
    )
    from keisei_core.bench.child import (
        reset_peak_rss as reset_peak_rss,
    )
    from keisei_core.bench.child import (
        run_child as run_child,
    )
    from keisei_core.bench.executors import (
        Executor as Executor,
    )
    from keisei_core.bench.executors import (
        GroupJob as GroupJob,
    )
    from keisei_core.bench.pipeline import (
        TableReporter as TableReporter,
    )
    from keisei_core.bench.probe_api import (
        ProbeContext as ProbeContext,
    )
    from keisei_core.bench.probe_api import (
        ProbeResult as ProbeResult,
    )
    from keisei_core.bench.probe_api import (
        ProbeUnsupported as ProbeUnsupported,
    )
    from keisei_core.bench.probe_api import (
        RolloutBatch as RolloutBatch,
    )
    from keisei_core.bench.reporter import (
        Reporter as Reporter,
    )
    from keisei_core.bench.results import (
        CellRecord as CellRecord,
    )
    from keisei_core.bench.results import (
        Results as Results,
    )
    from keisei_core.bench.results import (
        load_results as load_results,
    )
    from keisei_core.bench.table import (
        format_number as format_number,
    )
    from keisei_core.bench.workloads import (
        LEARNING_RATE as LEARNING_RATE,
    )
    from keisei_core.bench.workloads import (
        MAX_GRAD_NORM as MAX_GRAD_NORM,
    )
    from keisei_core.bench.workloads import (
        act_call as act_call,
    )
    from keisei_core.bench.workloads import (
        ppo_loss as ppo_loss,
    )
    from keisei_core.bench.workloads import (
        ppo_step as ppo_step,
    )
    from keisei_core.bench.workloads import (
        trainable_parameters as trainable_parameters,
    )
    from keisei_core.compile import (
        CompileFailedError as CompileFailedError,
    )
    from keisei_core.compile import (
        compile_model as compile_model,
    )
    from keisei_core.compile import (
        resolve_strategy as resolve_strategy,
    )
    from keisei_core.compile.artifacts import (
        artifact_key as artifact_key,
    )
    from keisei_core.compile.artifacts import (
        artifact_path as artifact_path,
    )
    from keisei_core.compile.artifacts import (
        build_atomically as build_atomically,
    )
    from keisei_core.compile.artifacts import (
        weights_hash as weights_hash,
    )
    from keisei_core.compile.composition import (
        Composition as Composition,
    )
    from keisei_core.compile.exported import (
        EXPORT_BATCH as EXPORT_BATCH,
    )
    from keisei_core.compile.exported import (
        check_eval_mode as check_eval_mode,
    )
    from keisei_core.compile.exported import (
        check_exported_cell as check_exported_cell,
    )
    from keisei_core.compile.exported import (
        check_exported_input as check_exported_input,
    )
    from keisei_core.compile.exported import (
        export_example as export_example,
    )
    from keisei_core.compile.exported import (
        exported_observation_shape as exported_observation_shape,
    )
    from keisei_core.compile.exported import (
        file_sha256 as file_sha256,
    )
    from keisei_core.compile.exported import (
        verify_sidecar as verify_sidecar,
    )
    from keisei_core.compile.exported import (
        weights_fingerprint as weights_fingerprint,
    )
    from keisei_core.compile.hardware import (
        native_precision_problem as native_precision_problem,
    )
    from keisei_core.compile.inplace import (
        compile_in_place as compile_in_place,
    )
    from keisei_core.compile.report import (
        CompileReport as CompileReport,
    )
    from keisei_core.compile.report import (
        Failure as Failure,
    )
    from keisei_core.compile.report import (
        report_data as report_data,
    )
    from keisei_core.compile.report import (
        report_from_data as report_from_data,
    )
    from keisei_core.compile.wrapping import (
        ForwardWrapper as ForwardWrapper,
    )
    from keisei_core.compile.wrapping import (
        add_forward_wrapper as add_forward_wrapper,
    )
    from keisei_core.compile.wrapping import (
        forward_wrappers as forward_wrappers,
    )
    from keisei_core.compile.wrapping import (
        wrapper_name as wrapper_name,
    )
    from keisei_core.config import (
        load_experiment as load_experiment,
    )
    from keisei_core.config.experiment import (
        BenchSettings as BenchSettings,
    )
    from keisei_core.heads import (
        WDL_SCORE_HEADS as WDL_SCORE_HEADS,
    )
    from keisei_core.heads import (
        output_heads as output_heads,
    )
    from keisei_core.heads import (
        scalar_value_from_wdl as scalar_value_from_wdl,
    )
    from keisei_core.introspect import (
        model_shapes as model_shapes,
    )
    from keisei_core.models import (
        options_as_dict as options_as_dict,
    )
    from keisei_core.models import (
        resolve_options as resolve_options,
    )
    from keisei_core.nn.se import (
        SEFunction as SEFunction,
    )
    from keisei_core.nn.se import (
        SEUnit as SEUnit,
    )
    from keisei_core.nn.se import (
        SqueezeExcitation as SqueezeExcitation,
    )
    from keisei_core.nn.se import (
        SqueezeExcitationFiLM as SqueezeExcitationFiLM,
    )
    from keisei_core.nn.se import (
        se_hidden_width as se_hidden_width,
    )
    from keisei_core.observations import (
        make_legal_masks as make_legal_masks,
    )
    from keisei_core.observations import (
        make_observations as make_observations,
    )
    from keisei_core.plugins import (
        PluginHost as PluginHost,
    )
    from keisei_core.plugins import (
        get_host as get_host,
    )
    from keisei_core.spaces import (
        KEISEI_2026 as KEISEI_2026,
    )
    from keisei_core.spaces import (
        ModelSpaces as ModelSpaces,
    )
    from keisei_core.spaces import (
        ObservationSpace as ObservationSpace,
    )
    from keisei_core.stats import (
        Statistics as Statistics,
    )
    from keisei_core.stats import (
        quantile as quantile,
    )
    from keisei_core.stats import (
        summarize as summarize,
    )
    from keisei_core.timing import (
        MIN_BLOCK_SECONDS as MIN_BLOCK_SECONDS,
    )
    from keisei_core.timing import (
        measure as measure,
    )
    from keisei_core.timing import (
        measure_interleaved as measure_interleaved,
    )
    from keisei_core.timing import (
        paired_ratio as paired_ratio,
    )
    from keisei_core.timing import (
        time_calls as time_calls,
    )

# -- what each hook's ``register`` callback takes -------------------------------------------
ModelRegister = Callable[[ModelSpec], None]
StrategyRegister = Callable[[StrategySpec], None]
ProbeRegister = Callable[[ProbeSpec], None]
CommandRegister = Callable[[CommandSpec], None]

# -- the callables a spec names ----------------------------------------------------------
ModelBuild = Callable[[Any], "nn.Module"]
StrategyApply = Callable[["nn.Module", StrategyContext], "nn.Module"]
ProbeRun = Callable[["ProbeContext"], "ProbeResult"]

# Names that import torch (or modules that do): loaded on first access.
_LAZY: dict[str, str] = {
    # the probe API (torch-free, but it brings the config layer and cattrs: loaded when used)
    "ProbeContext": "keisei_core.bench.probe_api",
    "ProbeResult": "keisei_core.bench.probe_api",
    "ProbeUnsupported": "keisei_core.bench.probe_api",
    "RolloutBatch": "keisei_core.bench.probe_api",
    "Statistics": "keisei_core.stats",
    "BenchSettings": "keisei_core.config.experiment",
    # models
    "ActorCriticMixin": "keisei_core.actor_critic",
    "SEUnit": "keisei_core.nn.se",
    "SEFunction": "keisei_core.nn.se",
    "SqueezeExcitation": "keisei_core.nn.se",
    "SqueezeExcitationFiLM": "keisei_core.nn.se",
    "se_hidden_width": "keisei_core.nn.se",
    "build_model": "keisei_core.api",
    "options_as_dict": "keisei_core.models",
    "resolve_options": "keisei_core.models",
    "model_shapes": "keisei_core.introspect",
    "make_observations": "keisei_core.observations",
    "make_legal_masks": "keisei_core.observations",
    # strategies
    "compile_in_place": "keisei_core.compile.inplace",
    "add_forward_wrapper": "keisei_core.compile.wrapping",
    "forward_wrappers": "keisei_core.compile.wrapping",
    "wrapper_name": "keisei_core.compile.wrapping",
    "artifact_key": "keisei_core.compile.artifacts",
    "artifact_path": "keisei_core.compile.artifacts",
    "build_atomically": "keisei_core.compile.artifacts",
    "resolve_strategy": "keisei_core.compile",
    # inference-only runners of an exported graph (ONNX Runtime, OpenVINO)
    "EXPORT_BATCH": "keisei_core.compile.exported",
    "check_eval_mode": "keisei_core.compile.exported",
    "check_exported_cell": "keisei_core.compile.exported",
    "check_exported_input": "keisei_core.compile.exported",
    "export_example": "keisei_core.compile.exported",
    "exported_observation_shape": "keisei_core.compile.exported",
    "file_sha256": "keisei_core.compile.exported",
    "verify_sidecar": "keisei_core.compile.exported",
    "weights_fingerprint": "keisei_core.compile.exported",
    # compile reports: typed in code, data only at a file boundary (report_data)
    "Composition": "keisei_core.compile.composition",
    "CompileReport": "keisei_core.compile.report",
    "Failure": "keisei_core.compile.report",
    "report_data": "keisei_core.compile.report",
    "report_from_data": "keisei_core.compile.report",
    # probes and measurement
    "measure": "keisei_core.timing",
    "measure_interleaved": "keisei_core.timing",
    "MIN_BLOCK_SECONDS": "keisei_core.timing",
    "paired_ratio": "keisei_core.timing",
    "time_calls": "keisei_core.timing",
    "summarize": "keisei_core.stats",
    "act_call": "keisei_core.bench.workloads",
    "ppo_loss": "keisei_core.bench.workloads",
    "ppo_step": "keisei_core.bench.workloads",
    "trainable_parameters": "keisei_core.bench.workloads",
    "LEARNING_RATE": "keisei_core.bench.workloads",
    "MAX_GRAD_NORM": "keisei_core.bench.workloads",
    # probes that measure in a child process of their own (memory, compile time)
    "child_main": "keisei_core.bench.child",
    "run_child": "keisei_core.bench.child",
    "current_rss_bytes": "keisei_core.bench.child",
    "peak_rss_bytes": "keisei_core.bench.child",
    "reset_peak_rss": "keisei_core.bench.child",
    # files and options
    "write_bytes_atomic": "keisei_core.atomic_files",
    "structure_options": "keisei_core.config.converter",
    # Runners and executors of the benchmark pipeline (the torchrun runner of
    # keisei-plugin-distributed runs keisei_core.bench.run with an Executor of its own).
    "run_bench": "keisei_core.bench.pipeline",
    "Executor": "keisei_core.bench.executors",
    "GroupJob": "keisei_core.bench.executors",
    "Reporter": "keisei_core.bench.reporter",
    "TableReporter": "keisei_core.bench.pipeline",
    "CellRecord": "keisei_core.bench.results",
    "Results": "keisei_core.bench.results",
    "load_experiment": "keisei_core.config",
    # Rebuilding a cell in another process (the ranks of train-step-ddp, memory probes).
    "PluginHost": "keisei_core.plugins",
    "apply_cell_strategy": "keisei_core.bench.child",
    "build_probe_context": "keisei_core.bench.child",
    # used by the Keisei 2026 and OpenVINO plugins
    "WDL_SCORE_HEADS": "keisei_core.heads",
    "scalar_value_from_wdl": "keisei_core.heads",
    "output_heads": "keisei_core.heads",
    "KEISEI_2026": "keisei_core.spaces",
    "ModelSpaces": "keisei_core.spaces",
    "ObservationSpace": "keisei_core.spaces",
    "write_json_atomic": "keisei_core.atomic_files",
    "ForwardWrapper": "keisei_core.compile.wrapping",
    "weights_hash": "keisei_core.compile.artifacts",
    "load_results": "keisei_core.bench.results",
    "format_number": "keisei_core.bench.table",
    "calibrate_peak": "keisei_core.bench.builtin_probes",
    "forward_flops_per_sample": "keisei_core.bench.builtin_probes",
    "compile_model": "keisei_core.compile",
    "CompileFailedError": "keisei_core.compile",
    "get_host": "keisei_core.plugins",
    "quantile": "keisei_core.stats",
    "native_precision_problem": "keisei_core.compile.hardware",
}

# A public name that differs from the name in its module.
_RENAMED: dict[str, str] = {"structure_options": "structure", "run_bench": "run"}

__all__ = [
    "API_VERSION",
    "CheckpointError",
    "CommandContext",
    "CommandRegister",
    "CommandSpec",
    "CompileStatus",
    "ConfigError",
    "DTYPE_NAMES",
    "FailureKind",
    "ImportString",
    "InputError",
    "KeiseiError",
    "ModelBuild",
    "ModelRegister",
    "ModelSpec",
    "NoOptions",
    "PluginError",
    "ProbeRegister",
    "ProbeRun",
    "ProbeSpec",
    "StrategyApply",
    "StrategyContext",
    "StrategyRegister",
    "StrategySpec",
    "UnknownNameError",
    "dtype_name",
    "hookimpl",
    "one_line",
    "torch_dtype",
    *_LAZY,
]


_lazy_getattr, _lazy_dir = lazy_attributes(globals(), _LAZY, __all__, _RENAMED)


def __getattr__(name: str) -> Any:  # a def, so type checkers see the module's lazy names
    return _lazy_getattr(name)


def __dir__() -> list[str]:
    return _lazy_dir()
