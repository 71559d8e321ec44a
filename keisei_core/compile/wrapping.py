"""Wrap a module's ``forward`` without changing its class, submodules or state_dict keys.

Transforms (channels-last input conversion, autocast, an AOT runner) wrap ``forward``
through an instance attribute holding the module itself, so that ``copy.deepcopy``
and pickling rebind the wrapper to the copy (a closure over the original module would
keep calling the original). Wrappers are plain functions
``wrapper(module, inner, *args, **kwargs)`` where ``inner(*args, **kwargs)`` runs the
rest of the chain (the earlier wrappers, then the class's own ``forward``). Use
``functools.partial`` to give a wrapper settings; keep them picklable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

ForwardWrapper = Callable[..., Any]

WRAPPERS_ATTR = "keisei_forward_wrappers"


class ChainedForward:
    """``module.forward`` after wrapping: the wrappers (innermost first) around the class's
    ``forward``. A plain object holding the module, so deep copies and pickles of the
    module carry a forward bound to the copy (a bound method does not pickle)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self.module
        call: Callable[..., Any] = functools.partial(type(module).forward, module)
        for wrapper in getattr(module, WRAPPERS_ATTR):
            call = functools.partial(wrapper, module, call)
        return call(*args, **kwargs)


def add_forward_wrapper(module: nn.Module, wrapper: ForwardWrapper) -> nn.Module:
    """Make ``module.forward`` run ``wrapper`` around the current forward; returns ``module``."""
    current = module.__dict__.get("forward")
    if current is not None and not isinstance(current, ChainedForward):
        raise TypeError(
            f"{type(module).__name__} already has an instance-level forward that keisei did not "
            "install; cannot wrap it safely"
        )
    wrappers = (*getattr(module, WRAPPERS_ATTR, ()), wrapper)
    # Plain attributes (not submodules, parameters or buffers): state_dict is unchanged.
    setattr(module, WRAPPERS_ATTR, wrappers)
    if current is None:
        module.forward = ChainedForward(module)  # type: ignore[method-assign]
    return module


def forward_wrappers(module: nn.Module) -> tuple[ForwardWrapper, ...]:
    """The wrappers installed on ``module`` by :func:`add_forward_wrapper`, innermost first."""
    return tuple(getattr(module, WRAPPERS_ATTR, ()))


def wrapper_name(wrapper: ForwardWrapper) -> str:
    """A stable name for a wrapper (used in artifact cache keys)."""
    if isinstance(wrapper, functools.partial):
        settings = ",".join(f"{k}={v!r}" for k, v in sorted(wrapper.keywords.items()))
        return f"{wrapper_name(wrapper.func)}({settings})"
    return f"{getattr(wrapper, '__module__', '?')}.{getattr(wrapper, '__qualname__', repr(wrapper))}"
