"""Compile a module in place, so PPO methods run compiled code and state_dict keys stay eager's.

Two defects of the original are avoided by construction (KEISEI-MODELS.md, 2 and 3):
``torch.compile(model)`` returns an ``OptimizedModule`` whose state_dict keys carry
``_orig_mod.`` and whose ``get_action_and_value`` is the eager module's. Here the module
itself is compiled: its ``__call__`` is routed through ``torch.compile`` (as
``nn.Module.compile`` does), so ``self(obs)`` inside the actor-critic methods runs the
compiled graph and the parameters keep their names.

Unlike ``nn.Module.compile``, every compiled module gets its own code object to compile.
TorchDynamo keeps compiled graphs per code object with a limit of 8
(``torch._dynamo.config.recompile_limit``); compiling ``Module._call_impl`` or a class's
``forward`` shares that budget between all modules of a class, so after a few models
(or batch-size buckets, train/eval, grad/no-grad) dynamo silently runs eager code. A
private code object gives each module its own budget and makes its graphs countable
(:meth:`CompiledCall.graph_count`).

The batch dimension of the first argument is marked dynamic on every call, so new batch
sizes reuse one graph. Dynamo still specialises batch 1, and on CPU the convolution
backend choice (hence a guard) changes at batch 16, so expect up to three graphs per
(train/eval, grad) pair: batch 1, 2-15 and 16+, never one per batch size.
"""

from __future__ import annotations

import itertools
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

_serial = itertools.count()


def _call_module(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    return module._call_impl(*args, **kwargs)


def _private_function() -> types.FunctionType:
    # A copy of _call_module with its own code object: dynamo's cache (and its recompile
    # limit) is per code object, so each compiled module gets its own.
    code = _call_module.__code__.replace(co_name=f"keisei_compiled_call_{next(_serial)}")
    return types.FunctionType(code, _call_module.__globals__, code.co_name)


class CompiledCall:
    """The compiled ``__call__`` of one module (installed as ``module._compiled_call_impl``).

    ``nn.Module.__getstate__`` drops ``_compiled_call_impl``, so pickling or deep-copying
    a compiled module gives an eager copy with the same weights.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        backend: str | Callable[..., Any] = "inductor",
        mode: str | None = None,
        options: Mapping[str, Any] | None = None,
        fullgraph: bool = False,
        dynamic_batch: bool = True,
    ) -> None:
        self._module = weakref.ref(module)
        self.backend = backend
        self.mode = mode
        self.options = dict(options) if options else None
        self.fullgraph = fullgraph
        self.dynamic_batch = dynamic_batch
        self.resets = 0
        self._build()

    def _build(self) -> None:
        self.function = _private_function()
        kwargs: dict[str, Any] = {"backend": self.backend, "fullgraph": self.fullgraph}
        if self.mode is not None:
            kwargs["mode"] = self.mode
        if self.options:
            kwargs["options"] = self.options
        self.compiled = torch.compile(self.function, **kwargs)

    def reset(self) -> None:
        """Forget compiled graphs: the next call compiles again (e.g. after frozen weights changed)."""
        self.resets += 1
        self._build()

    def graph_count(self) -> int:
        """Graphs dynamo holds for this module (one per guard set: bucket, mode, grad)."""
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list

        return len(_debug_get_cache_entry_list(self.function.__code__))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self._module()
        if module is None:  # pragma: no cover - the module owns this object
            raise RuntimeError("compiled module was garbage collected")
        if self.dynamic_batch and args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0:
            torch._dynamo.maybe_mark_dynamic(args[0], 0)
        return self.compiled(module, *args, **kwargs)


def _recompile_after_load(module: nn.Module, _incompatible_keys: Any) -> None:
    call = module.__dict__.get("_compiled_call_impl")
    if isinstance(call, CompiledCall):
        call.reset()


def compile_in_place(
    module: nn.Module,
    *,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    options: Mapping[str, Any] | None = None,
    fullgraph: bool = False,
    dynamic_batch: bool = True,
    recompile_on_load: bool = False,
) -> nn.Module:
    """Route ``module.__call__`` through ``torch.compile`` and return the same module.

    ``recompile_on_load``: recompile after ``load_state_dict`` -- needed when the compiled
    graph bakes weights in as constants (inductor's ``freezing``), which would otherwise
    keep computing with the old weights.
    """
    module._compiled_call_impl = CompiledCall(  # type: ignore[assignment]
        module, backend=backend, mode=mode, options=options, fullgraph=fullgraph,
        dynamic_batch=dynamic_batch,
    )
    if recompile_on_load:
        module.register_load_state_dict_post_hook(_recompile_after_load)
    return module


def compiled_call(module: nn.Module) -> CompiledCall | None:
    """The module's :class:`CompiledCall` when it was compiled by :func:`compile_in_place`."""
    call = module.__dict__.get("_compiled_call_impl")
    return call if isinstance(call, CompiledCall) else None
