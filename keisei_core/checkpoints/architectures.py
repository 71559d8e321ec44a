"""Architecture tags of foreign checkpoints: checking a model against one, and picking one.

Keisei 2026's checkpoints say which of its architectures wrote them (``"se_resnet"``,
``"resnet"``, ``"mlp"``, ``"transformer"``); a registered model lists the tags whose
weights it takes (``ModelSpec.checkpoint_architectures``). Loading a tagged checkpoint into
a model that does not take its tag is refused before any key is compared (the error names
the models that do); a model that lists no tags is checked by its keys alone.
:func:`models_for_checkpoint` picks registered models for ``keisei info --weights FILE``
without a model name: those taking the tag whose state_dict layout fits the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keisei_core.checkpoints.state_dicts import LoadedStateDict, compare_state_dict, unwrap_compiled
from keisei_core.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

    from keisei_core.plugins import PluginHost
    from keisei_core.specs import ModelSpec


def check_architecture(model: nn.Module, loaded: LoadedStateDict) -> None:
    if loaded.architecture is None:
        return
    target = unwrap_compiled(model)
    takes = tuple(getattr(target, "keisei_checkpoint_architectures", ()) or ())
    if takes and loaded.architecture not in takes:
        name = getattr(target, "keisei_model_name", None) or type(target).__name__
        raise CheckpointError(
            f"{loaded.source} was written by architecture '{loaded.architecture}', but model '{name}' "
            f"takes {', '.join(repr(t) for t in takes)} checkpoints; nothing was loaded"
        )


def specs_for_architecture(host: PluginHost, architecture: str) -> list[ModelSpec]:
    specs = (host.models.get(name) for name in host.models.names())
    return [spec for spec in specs if architecture in spec.checkpoint_architectures]


def fits(spec: ModelSpec, loaded: LoadedStateDict, *, adapt_input_channels: bool = False) -> bool:
    """Whether ``spec``'s preset has the file's keys and shapes (built on the meta device)."""
    import torch

    from keisei_core.models import build_from_spec, resolve_options

    with torch.device("meta"):
        model = build_from_spec(spec, resolve_options(spec))
    mismatch = compare_state_dict(model.state_dict(), loaded.state_dict)
    if not mismatch:
        return True
    stem_only = not mismatch.missing and not mismatch.unexpected and len(mismatch.misshaped) == 1
    return adapt_input_channels and stem_only


def models_for_checkpoint(host: PluginHost, loaded: LoadedStateDict, *, adapt_input_channels: bool = False) -> list[str]:
    """Registered model names that take ``loaded``'s architecture tag and fit its layout."""
    if loaded.architecture is None:
        raise CheckpointError(
            f"{loaded.source} has no architecture tag; name the model (keisei info MODEL --weights FILE)"
        )
    candidates = specs_for_architecture(host, loaded.architecture)
    if not candidates:
        raise CheckpointError(
            f"{loaded.source} was written by architecture '{loaded.architecture}', which no installed "
            "model takes (Keisei 2026's architectures come with keisei-plugin-keisei2026)"
        )
    found = [spec.name for spec in candidates if fits(spec, loaded, adapt_input_channels=adapt_input_channels)]
    if not found:
        names = ", ".join(spec.name for spec in candidates)
        raise CheckpointError(
            f"{loaded.source} ('{loaded.architecture}') fits none of the presets taking that tag ({names}) "
            "at their default options; name one and give its options with --set"
        )
    return found
