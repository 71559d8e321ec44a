"""``keisei info MODEL``: size, FLOPs and shapes of a registered model."""

from __future__ import annotations

import argparse
from typing import Any

from keisei_core.cli.context import CliContext
from keisei_core.cli.output import print_json
from keisei_core.errors import InputError

NAME = "info"
HELP = "show parameters, state_dict entries, FLOPs per sample and shapes of a model"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", default=None,
        help="registered model name (may be omitted with --weights when the checkpoint has an "
        "architecture tag: the installed model taking that tag whose layout fits is used)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="model option, e.g. --set depth=3 (repeatable; values parsed as TOML)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument(
        "--weights", metavar="FILE", default=None,
        help="load a checkpoint (bare state_dict, dict with model_state_dict, or from a compiled "
        "model) into the model and show what loaded and which integrity checks ran",
    )
    parser.add_argument(
        "--allow-cast", action="store_true",
        help="with --weights: cast weights of another dtype (e.g. int8) to the model's instead of "
        "refusing them; the casts are listed",
    )
    parser.add_argument(
        "--adapt-input-channels", action="store_true",
        help="with --weights: zero-pad or truncate the stem convolution's input channels when the "
        "checkpoint reads another number of observation planes (Keisei 2025's "
        "load_checkpoint_with_padding), and report it",
    )


def model_options_from_overrides(items: list[str]) -> dict[str, Any]:
    from keisei_core.config.overrides import apply_overrides

    return apply_overrides({}, items)


def describe_model(ctx: CliContext) -> dict[str, Any]:
    from keisei_core.heads import output_heads
    from keisei_core.introspect import count_parameters, flops_per_sample, model_shapes
    from keisei_core.models import build_from_spec, options_as_dict, resolve_options
    from keisei_core.spaces import model_spaces

    host = ctx.host()
    adapt = bool(getattr(ctx.args, "adapt_input_channels", False))
    if adapt and not getattr(ctx.args, "weights", None):
        raise InputError("--adapt-input-channels needs --weights FILE")
    model_name = ctx.args.model or pick_model(host, ctx.args)
    registration = host.models.registration(model_name)
    spec = registration.spec
    options = resolve_options(spec, model_options_from_overrides(ctx.args.overrides), where=f"model '{spec.name}' options (--set)")
    from keisei_core.model_size import check_model_size

    check_model_size(spec, options, f"model '{spec.name}' options (--set)")
    model = build_from_spec(spec, options)
    weights = None
    if getattr(ctx.args, "weights", None):
        from keisei_core.checkpoints import load_weights

        weights = load_weights(
            model, ctx.args.weights, allow_cast=bool(getattr(ctx.args, "allow_cast", False)),
            adapt_input_channels=adapt,
        ).summary()
    shapes = model_shapes(model)
    spaces = model_spaces(model)
    heads = output_heads(model)
    return {
        "name": spec.name,
        "plugin": registration.plugin,
        "distribution": registration.distribution,
        "family": spec.family,
        "options": options_as_dict(options),
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "state_dict_entries": len(model.state_dict()),
        "flops_per_sample": flops_per_sample(model),
        "input_shape": list(shapes.observation),
        "output_shapes": output_shapes(shapes.num_actions, heads),
        "observation_space": spaces.observation.describe(),
        "action_space": spaces.actions.describe(),
        "value_head": heads.value_kind,
        **({"weights": weights} if weights is not None else {}),
        "_model": model,
    }


def pick_model(host: Any, args: argparse.Namespace) -> str:
    """The model for ``--weights FILE`` given without a name: by the file's architecture tag."""
    from keisei_core.checkpoints import read_state_dict
    from keisei_core.checkpoints.architectures import models_for_checkpoint

    if not getattr(args, "weights", None):
        raise InputError("name a model (keisei info MODEL), or give --weights FILE of a tagged checkpoint")
    loaded = read_state_dict(args.weights)
    found = models_for_checkpoint(host, loaded, adapt_input_channels=bool(args.adapt_input_channels))
    if len(found) > 1:
        raise InputError(
            f"{args.weights} ('{loaded.architecture}') fits several models ({', '.join(found)}); name one"
        )
    return found[0]


def output_shapes(num_actions: int, heads: Any) -> dict[str, list[int]]:
    extra = {"value_wdl": [3], "score": []}
    return {"policy_logits": [num_actions], "value": [], **{name: extra[name] for name in heads.extra}}


def format_weights(weights: dict[str, Any]) -> str:
    stripped = (
        f", stripped '{weights['stripped_prefix']}' from {weights['stripped_keys']} keys"
        if weights["stripped_prefix"] else ""
    )
    other = f", other entries: {', '.join(weights['other_keys'])}" if weights["other_keys"] else ""
    integrity = f"; integrity: {', '.join(weights['integrity'])}" if weights.get("integrity") else ""
    cast = f"; cast: {', '.join(weights['cast'])}" if weights.get("cast") else ""
    tag = f", architecture '{weights['architecture']}'" if weights.get("architecture") else ""
    counted = ", ".join(f"{k} {v}" for k, v in (weights.get("counters") or {}).items())
    adapted = f", ADAPTED {'; '.join(weights['adapted'])}" if weights.get("adapted") else ""
    return (
        f"{weights['file']}: {weights['entries']} entries loaded, form {'+'.join(weights['forms'])}"
        f"{tag}{stripped}{', ' + counted if counted else ''}{other}{adapted}{integrity}{cast}"
    )


def run(ctx: CliContext) -> int:
    info = describe_model(ctx)
    info.pop("_model")
    if ctx.args.json:
        print_json(info)
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "options":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key == "weights":
            value = format_weights(value)
        elif isinstance(value, int) and key in {"parameters", "trainable_parameters", "flops_per_sample"}:
            value = f"{value:,}"
        print(f"{key.ljust(width)}  {value}")
    return 0
