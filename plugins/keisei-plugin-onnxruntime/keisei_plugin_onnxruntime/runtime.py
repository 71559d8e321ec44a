"""The ONNX Runtime session and the instance-level ``forward`` that calls it.

The compiled model is the (private) eager module itself with ``forward`` replaced on the
instance, not a wrapper: its ``state_dict`` keys stay the eager model's, and the PPO
methods of :class:`keisei_core.ActorCriticMixin`, which call ``self(obs)``, run through
ONNX Runtime.

The session holds a frozen copy of the weights taken at export. Weights changed later
(``load_state_dict``, an optimiser step) are not seen by the session; so that this never
gives silently old answers, each call compares the parameters' and buffers' storage and
version counters with those at export and, when they moved, re-hashes the weights: equal
values (e.g. the same state_dict loaded again) are accepted, different ones raise
:class:`StaleWeightsError`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from keisei_core.plugin import check_eval_mode, check_exported_input, weights_fingerprint
from keisei_plugin_onnxruntime.errors import InferenceOnlyError, OnnxInputError, StaleWeightsError
from keisei_plugin_onnxruntime.export import INPUT_NAME

Fingerprint = tuple[tuple[int, int], ...]  # what keisei_core's weights_fingerprint returns


def make_session(source: Path | bytes, intra_op_threads: int) -> Any:
    """A CPU InferenceSession with ``intra_op_threads`` threads (same as torch's, for fair timings)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # One graph, run sequentially: inter-op parallelism would add threads torch does not use.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxForward:
    """``forward(obs) -> (logits (B, A), value (B,))`` computed by an ONNX Runtime session."""

    def __init__(
        self,
        model: nn.Module,
        session: Any,
        observation: tuple[int, int, int],
        weights: str,
        digest_weights: Callable[[nn.Module], str],
    ) -> None:
        # A weak reference: the module owns this object, so a strong one would be a cycle.
        self._model = weakref.ref(model)
        self.session = session
        self.observation = observation
        self.weights = weights
        self._digest_weights = digest_weights
        self._fingerprint: Fingerprint | None = weights_fingerprint(model)

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self._model()
        if model is None:  # pragma: no cover - the module owns this object
            raise RuntimeError("the module of this ONNX forward no longer exists")
        check_eval_mode(model, "onnxruntime", error=InferenceOnlyError)
        self._check_weights(model)
        check_exported_input(obs, self.observation, runtime="onnxruntime session", error=OnnxInputError)
        array = obs.detach().contiguous().numpy()
        # (logits, value) and, for multi-head models, their extra heads (keisei_core.heads).
        return tuple(torch.from_numpy(output) for output in self.session.run(None, {INPUT_NAME: array}))

    def _check_weights(self, model: nn.Module) -> None:
        current = weights_fingerprint(model)
        if current == self._fingerprint:
            return
        if self._digest_weights(model) != self.weights:
            raise StaleWeightsError(
                f"the weights of {type(model).__name__} changed after its ONNX export, which the "
                "ONNX Runtime session cannot see; compile the updated eager model again"
            )
        self._fingerprint = current

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxForward:
        # copy.deepcopy(compiled) registers the module's copy in memo before copying its
        # __dict__, so the copy's forward binds to it. The session is shared (its run() is
        # thread-safe); the copy's weights are verified against the export on first call.
        original = self._model()
        target = memo.get(id(original), original) if original is not None else None
        if target is None:  # pragma: no cover - the module owns this object
            raise RuntimeError("the module of this ONNX forward no longer exists")
        clone = OnnxForward.__new__(OnnxForward)
        clone._model = weakref.ref(target)
        clone.session = self.session
        clone.observation = self.observation
        clone.weights = self.weights
        clone._digest_weights = self._digest_weights
        clone._fingerprint = None
        return clone


def attach(model: nn.Module, runner: OnnxForward) -> None:
    """Route ``model(obs)`` (and so the PPO methods) through ``runner``; keys stay unchanged."""
    # Plain attributes (not Parameters/Modules/buffers) never enter the state_dict.
    # The session is reachable as ``model.forward.session`` only: a second reference in the
    # module's __dict__ would make copy.deepcopy try (and fail) to copy the session.
    model.forward = runner  # type: ignore[method-assign]
