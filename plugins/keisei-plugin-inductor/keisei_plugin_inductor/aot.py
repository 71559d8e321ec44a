"""``aot-inductor``: torch.export the (transformed) model once, compile it ahead of time with
AOTInductor into a ``.pt2`` package, and cache the package on disk.

The package lives at ``<cache>/aot-inductor/<key>.pt2`` where the key hashes the model's
name and options, its weights, the torch version, device, dtype and the composition
(:func:`keisei_core.compile.artifact_key`), beside a ``<key>.json`` sidecar with its
SHA-256: a package the sidecar does not vouch for is rebuilt with one warning
(:mod:`keisei_plugin_inductor.package_cache`). A second run with the same key loads the
package in milliseconds instead of compiling for a minute, and records
``warm_start=True`` and the package path in the compile report.

The model keeps its parameters (state_dict keys as eager) and gets a wrapped
``forward`` that runs the package, so the PPO methods run compiled code. The package
computes with the weights it was compiled with: after ``load_state_dict`` the next call
looks up (or builds) the package for the new weights. Inference only: the package holds
the eval-mode graph (BatchNorm with running statistics), so train mode is refused.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from keisei_core.plugin import (
    InputError,
    StrategyContext,
    add_forward_wrapper,
    artifact_key,
    forward_wrappers,
)
from keisei_plugin_inductor.exported import export_dynamic, mark_stale_on_load, steps_aside
from keisei_plugin_inductor.package_cache import PackageEntry, load_or_build

STRATEGY = "aot-inductor"


class AotPackage:
    """The package a module runs, and how to find or build it again for new weights."""

    def __init__(self, context: StrategyContext, wrappers: tuple[Any, ...] = ()) -> None:
        # Keep what a rebuild needs, not the caller's notes or its (maybe large) example.
        example = context.example_obs
        if example is None:
            raise InputError("aot-inductor needs an example observation to export with")
        if example.shape[0] < 2:  # a batch-1 example would specialise the batch dimension
            example = example.expand(2, *example.shape[1:])
        self.example = example[:2].detach().clone()
        self.context = attrs.evolve(context, notes={}, example_obs=None)
        self.wrappers = wrappers  # the forward wrappers (transforms) the package contains
        self.path: Path | None = None
        self.runner: Any = None
        self.stale = False
        self.exporting = False
        self.builds = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> AotPackage:
        # The loaded runner is shared (it is read-only); a copy loading other weights
        # marks only its own package stale.
        twin = copy.copy(self)
        twin.example = self.example.clone()
        twin.context = copy.deepcopy(self.context, memo)
        return twin

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["runner"] = None
        state["stale"] = True  # reload (or rebuild) from disk after unpickling
        return state

    def ensure(self, module: nn.Module) -> bool:
        """Load the package for the module's current weights, building it if absent.
        Returns whether an existing package was reused."""
        key = artifact_key(module, self.context, STRATEGY, wrappers=self.wrappers, batch_dim="dynamic")
        entry = PackageEntry.for_key(self.context, STRATEGY, key)

        def build(temporary: Path) -> None:
            torch._inductor.aoti_compile_and_package(self._export(module), package_path=str(temporary))

        self.runner, reused, _ = load_or_build(entry, key, build, {"strategy": STRATEGY}, label=STRATEGY)
        if not reused:
            self.builds += 1
        self.path = entry.package
        self.stale = False
        return reused

    def _export(self, module: nn.Module) -> Any:
        return export_dynamic(module, self.example, self)


def aot_forward(module: nn.Module, inner: Any, obs: torch.Tensor, *args: Any, package: AotPackage, **kwargs: Any) -> Any:
    if steps_aside(STRATEGY, module, package, args, kwargs):
        return inner(obs, *args, **kwargs)
    if package.stale or package.runner is None:
        package.ensure(module)
    # (logits, value) and, for multi-head models, their extra heads (keisei_core.heads).
    return tuple(package.runner(obs))


def compile_aot(model: nn.Module, context: StrategyContext) -> nn.Module:
    model.eval()
    package = AotPackage(context, forward_wrappers(model))
    reused = package.ensure(model)
    context.record("warm_start", reused)
    context.record("aot_package", str(package.path))
    add_forward_wrapper(model, functools.partial(aot_forward, package=package))
    mark_stale_on_load(model, "package", AotPackage)
    return model
