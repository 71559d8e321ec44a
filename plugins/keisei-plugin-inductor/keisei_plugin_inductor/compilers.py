"""TorchInductor JIT strategies: the model is compiled in place (keys and PPO methods intact).

Compiled artifacts go to Inductor's on-disk caches (FX graph cache, AOTAutograd cache),
which live under ``<keisei cache>/inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set:
a second run of the same model and strategy loads the generated code instead of
generating it again, and the compile report says so (``warm_start``, ``cache``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from keisei_core.plugin import StrategyContext, compile_in_place


def use_keisei_cache(context: StrategyContext) -> str:
    """Point Inductor's caches into the keisei cache folder unless the user chose one.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it needs the folder, and writes
    its default (``/tmp/torchinductor_<user>``) into the environment when unset (already
    when ``torch._dynamo`` is imported). So an unset variable or the default value both
    mean "not chosen": they are replaced by ``<keisei cache>/inductor``; any other value
    is the user's choice and is kept.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if folder is None or os.path.abspath(folder) == os.path.abspath(default_cache_dir()):
        folder = str(context.cache_dir / "inductor")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    context.record("inductor_cache_dir", folder)
    return folder


def compile_with_inductor(
    model: nn.Module,
    context: StrategyContext,
    *,
    mode: str | None = None,
    options: Mapping[str, Any] | None = None,
    recompile_on_load: bool = False,
) -> nn.Module:
    use_keisei_cache(context)
    if mode is not None:
        context.record("inductor_mode", mode)
    return compile_in_place(
        model, backend="inductor", mode=mode, options=options, recompile_on_load=recompile_on_load
    )


def compile_frozen(model: nn.Module, context: StrategyContext) -> nn.Module:
    """Freezing folds the weights into the generated code as constants (and pre-packs them
    for oneDNN), which only applies to inference graphs (no grad). Because the weights are
    baked in, ``load_state_dict`` on the compiled model triggers a recompile."""
    context.record("inductor_options", "freezing=True")
    return compile_with_inductor(model, context, options={"freezing": True}, recompile_on_load=True)
