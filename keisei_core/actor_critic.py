"""The actor-critic interface every keisei model satisfies, and the mixin that provides it.

A network only has to implement ``forward(obs) -> (policy_logits (B, A), value (B,))``;
:class:`ActorCriticMixin` adds the two PPO methods with legal-action masking.

Input rules, checked before the network runs (each an :class:`~keisei_core.errors.InputError`
line naming what was expected and what was given):
- observations are a 4-D floating-point tensor ``(B, C, H, W)``;
- ``(C, H, W)`` is the model's declared input shape (its ``observation_shape``, else its
  options' ``input_channels`` and ``board_size``), when it declares one;
- the dtype is the model's (that of its first floating-point parameter), unless autocast
  is on for the observations' device (autocast casts inputs itself).

Masking rules (Keisei defect 1 is not repeated):
- an action is never illegal: illegal entries get probability exactly 0 (they are masked
  with ``-inf`` before the float32 log-softmax), whatever the legal logits are, so
  logits at the dtype's finite minimum cannot tie with masked ones;
- in ``get_action_and_value`` (and :func:`masked_log_probs`), a NaN or ``+inf`` logit on
  a *legal* action, or a row whose legal logits are all ``-inf``, raises ``InputError``
  naming the rows (no action can be chosen there); ``evaluate_actions`` lets them
  propagate into NaN log-probabilities and entropies instead, as a training loss must
  for the trainer (and the train-stability probe) to see the divergence; a ``-inf``
  logit on some legal actions gives them probability 0 (the network masked them
  itself); illegal entries may hold anything;
- a row with no legal action raises ``InputError`` naming the rows -- a terminal position
  must be handled by the environment, never sampled from;
- NaN or inf in the observations raises ``InputError`` naming the rows;
- a 1-D mask of length A applies to every row.
These value checks share one device-to-host synchronisation per call.
Log-probabilities, entropies and values are float32 for float32/bf16/fp16 networks
(float64 for float64 networks); the log-probabilities of :func:`masked_log_probs` and
``evaluate_actions`` are finite everywhere (masked and underflowing entries are clamped
to the compute dtype's finite minimum), so entropies and their gradients stay finite.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol, runtime_checkable

import torch

from keisei_core.errors import InputError

# How many row indices an error message lists before it stops.
SHOWN_ROWS = 8


@runtime_checkable
class ActorCriticProtocol(Protocol):
    """What the benchmark engine, strategies and PPO code rely on."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def get_action_and_value(
        self, obs: torch.Tensor, legal_mask: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, legal_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def _rows(flags: torch.Tensor) -> list[int]:
    rows: list[int] = torch.nonzero(flags).flatten().tolist()
    return rows[:SHOWN_ROWS]


def _check_observation_type(obs: Any) -> None:
    if not isinstance(obs, torch.Tensor):
        raise InputError(f"observations must be a torch.Tensor, got {type(obs).__name__}")
    if obs.dim() != 4:
        raise InputError(f"observations must be 4-D (B, C, H, W), got shape {tuple(obs.shape)}")
    if not obs.is_floating_point():
        raise InputError(f"observations must be floating point, got {obs.dtype}")


def check_observations(obs: torch.Tensor) -> None:
    """Type, rank, dtype kind and finiteness of observations (one InputError otherwise)."""
    _check_observation_type(obs)
    bad = ~torch.isfinite(obs).flatten(1).all(dim=1)
    if bool(bad.any()):
        raise InputError(f"observations contain NaN or inf in rows {_rows(bad)}")


def declared_observation_shape(model: Any) -> tuple[int, ...] | None:
    """``(C, H, W)`` the model declares (``observation_shape``, else its options'
    ``input_channels``/``board_size``), or None when it declares none."""
    shape = getattr(model, "observation_shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)
    options = getattr(model, "keisei_model_options", None)
    if isinstance(options, dict) and "input_channels" in options and "board_size" in options:
        board = int(options["board_size"])
        return (int(options["input_channels"]), board, board)
    return None


class _DeclaredInput:
    """The declared shape and a weak reference to the parameter whose dtype is the model's,
    found once per module (walking ``parameters()`` on every batch-1 call costs more than
    the checks themselves)."""

    __slots__ = ("declared", "parameter", "shape")

    def __init__(self, model: torch.nn.Module) -> None:
        self.shape = declared_observation_shape(model)
        # A module whose forward converts its input (validation's float64 referee takes
        # the float32 observations of the models it referees) declares the dtype it takes.
        self.declared: torch.dtype | None = getattr(model, "keisei_input_dtype", None)
        first = next((p for p in model.parameters() if p.is_floating_point()), None)
        self.parameter = weakref.ref(first) if first is not None else None

    def dtype(self) -> torch.dtype | None:
        if self.declared is not None:
            return self.declared
        parameter = self.parameter() if self.parameter is not None else None
        return parameter.dtype if parameter is not None else None


# Kept beside the modules, not in them: an attribute holding a weak reference would make
# every model unpicklable after its first PPO call, and copy.deepcopy would hand the copy a
# reference to the original's parameter.
_DECLARED: weakref.WeakKeyDictionary[torch.nn.Module, _DeclaredInput] = weakref.WeakKeyDictionary()


def check_declared_input(model: torch.nn.Module, obs: torch.Tensor) -> None:
    """Observations fit the model's declared ``(C, H, W)`` and dtype (no device sync)."""
    declared = _DECLARED.get(model)
    if declared is None:
        declared = _DeclaredInput(model)
        _DECLARED[model] = declared
    name = type(model).__name__
    if declared.shape is not None and tuple(obs.shape[1:]) != declared.shape:
        channels, height, width = declared.shape
        raise InputError(
            f"observations of shape {tuple(obs.shape)} do not fit {name}: expected (B, {channels}, "
            f"{height}, {width}) (channels, board, board), got (B, {', '.join(str(s) for s in obs.shape[1:])})"
        )
    dtype = declared.dtype()
    if dtype is not None and obs.dtype != dtype and not torch.is_autocast_enabled(obs.device.type):
        # The parameter may have been replaced (e.g. a conversion that makes new Parameter
        # objects): look again before calling it a mismatch.
        declared = _DeclaredInput(model)
        _DECLARED[model] = declared
        dtype = declared.dtype()
        if dtype is not None and obs.dtype != dtype:
            raise InputError(
                f"observations have dtype {obs.dtype} but {name} computes in {dtype}: expected "
                f"{dtype}, got {obs.dtype} (convert with obs.to({dtype}))"
            )


def _legal_mask_2d(legal_mask: Any, batch: int, num_actions: int, device: torch.device) -> torch.Tensor:
    """``legal_mask`` checked for type and shape (no device sync) as ``(1 or B, A)`` on ``device``."""
    if not isinstance(legal_mask, torch.Tensor):
        raise InputError(f"legal_mask must be a torch.Tensor, got {type(legal_mask).__name__}")
    if legal_mask.dtype != torch.bool:
        raise InputError(f"legal_mask must have dtype torch.bool, got {legal_mask.dtype}")
    if legal_mask.dim() == 1:
        legal_mask = legal_mask.unsqueeze(0)
    if legal_mask.dim() != 2 or legal_mask.shape[1] != num_actions or legal_mask.shape[0] not in (1, batch):
        raise InputError(
            f"legal_mask must have shape ({batch}, {num_actions}) or ({num_actions},), "
            f"got {tuple(legal_mask.shape)}"
        )
    return legal_mask.to(device)


def _check_values(
    obs: torch.Tensor | None,
    logits: torch.Tensor,
    legal: torch.Tensor | None,
    log_probs: torch.Tensor,
    *,
    refuse_bad_logits: bool = True,
) -> None:
    """NaN/inf observations, rows without a legal action, NaN/+inf legal logits or rows whose
    legal logits are all ``-inf``: one InputError naming the rows.

    When all is well this costs one reduction of the masked log-softmax and one
    device-to-host sync: a row is usable exactly when its largest log-probability is
    finite (NaN and +inf logits make it NaN, a row without a finite legal logit -inf or NaN).
    """
    flags = ~torch.isfinite(log_probs.amax(dim=-1))
    bad_obs = None
    if obs is not None:
        bad_obs = ~torch.isfinite(obs).flatten(1).all(dim=1)
        flags = flags | bad_obs
    if not bool(flags.any()):
        return
    if bad_obs is not None and bool(bad_obs.any()):
        raise InputError(f"observations contain NaN or inf in rows {_rows(bad_obs)}")
    if legal is not None:
        empty = ~legal.any(dim=1)
        if bool(empty.any()):
            raise InputError(
                f"legal_mask rows {_rows(empty)} have no legal action; a terminal position cannot be "
                "acted in (end the episode before asking the policy)"
            )
    if not refuse_bad_logits:
        return
    raise InputError(
        f"the network's policy logits are NaN or +inf on legal actions, or -inf on all of them, in rows "
        f"{_rows(flags)} (dtype {logits.dtype}); no action can be chosen there -- check the network "
        "and its inputs"
    )


def _sample(log_probs: torch.Tensor) -> torch.Tensor:
    """One action per row, drawn with probability ``exp(log_probs)``.

    Inverse CDF with one uniform number per row (float64 cumulative sums): at batch 1
    with ~13.5k actions this is several times cheaper on CPU than ``torch.multinomial``,
    which draws a random number per entry. An entry of probability 0 (illegal, or a
    legal ``-inf`` logit) is never picked: the drawn point lies strictly below the total,
    and the first cumulative sum above it belongs to an entry that increased it.
    """
    cdf = log_probs.exp().cumsum(dim=-1, dtype=torch.float64)
    total = cdf[:, -1:]
    below_total = torch.nextafter(total, torch.zeros_like(total))
    point = torch.minimum(torch.rand(total.shape, dtype=torch.float64, device=cdf.device) * total, below_total)
    return torch.searchsorted(cdf, point, right=True).squeeze(-1)


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    # Low precision is promoted to float32; float64 stays float64 (casting its finite
    # minimum down to float32 would make masked logits -inf and entropy gradients NaN).
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _masked_log_softmax(
    logits: torch.Tensor, legal: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked logits in the compute dtype, illegal entries ``-inf``; their log-softmax)."""
    wide = logits.to(_compute_dtype(logits))
    if legal is not None:
        wide = torch.where(legal, wide, float("-inf"))  # one op: no inverted mask to build
    return wide, torch.log_softmax(wide, dim=-1)


def masked_log_probs(
    logits: torch.Tensor, legal_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``legal_mask`` and ``logits``; return (masked logits, log-probs).

    The masked logits are in the compute dtype (float32, or float64 for float64 logits)
    with ``-inf`` on illegal actions; the log-probs are finite everywhere: illegal and
    underflowing entries hold the compute dtype's finite minimum (probability 0)."""
    batch, num_actions = logits.shape
    legal = None if legal_mask is None else _legal_mask_2d(legal_mask, batch, num_actions, logits.device)
    masked, log_probs = _masked_log_softmax(logits, legal)
    _check_values(None, logits, legal, log_probs)
    return masked, log_probs.clamp_min(torch.finfo(log_probs.dtype).min)


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    # Masked entries have probability exactly 0; where() keeps 0 * (huge negative) out.
    return -torch.where(probs > 0, probs * log_probs, torch.zeros_like(log_probs)).sum(dim=-1)


class ActorCriticMixin:
    """Adds ``get_action_and_value`` and ``evaluate_actions`` to any ``nn.Module`` whose
    ``forward(obs)`` returns ``(policy_logits (B, A), value (B,))``.

    Both methods call ``self(obs)``, so a module compiled in place (``module.compile()``)
    or with a wrapped forward runs its compiled code here too.
    """

    def _policy_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_observation_type(obs)
        check_declared_input(self, obs)  # type: ignore[arg-type]
        # Multi-head models return more outputs after the PPO pair (keisei_core.heads).
        logits, value = self(obs)[:2]  # type: ignore[operator]
        if logits.dim() != 2 or logits.shape[0] != obs.shape[0]:
            raise InputError(
                f"{type(self).__name__}.forward returned logits of shape {tuple(logits.shape)}, "
                f"expected ({obs.shape[0]}, num_actions)"
            )
        return logits, value.reshape(-1)

    def _legal(self, legal_mask: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
        if legal_mask is None:
            return None
        return _legal_mask_2d(legal_mask, logits.shape[0], logits.shape[1], logits.device)

    def get_action_and_value(
        self, obs: torch.Tensor, legal_mask: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pick an action per row (sampled, or the best legal one when deterministic)."""
        logits, value = self._policy_and_value(obs)
        legal = self._legal(legal_mask, logits)
        masked, log_probs = _masked_log_softmax(logits, legal)
        _check_values(obs, logits, legal, log_probs)
        # Illegal entries are -inf (probability exactly 0): neither choice can pick them.
        action = masked.argmax(dim=-1) if deterministic else _sample(log_probs)
        log_prob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return action, log_prob, value.to(log_prob.dtype)

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, legal_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of given actions under the (masked) policy, and the value."""
        logits, value = self._policy_and_value(obs)
        num_actions = logits.shape[1]
        if not isinstance(actions, torch.Tensor) or actions.dtype not in (torch.int64, torch.int32):
            raise InputError("actions must be an integer tensor (torch.long) of shape (B,)")
        if actions.shape != (logits.shape[0],):
            raise InputError(f"actions must have shape ({logits.shape[0]},), got {tuple(actions.shape)}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= num_actions):
            raise InputError(
                f"actions must lie in [0, {num_actions}); got values from {int(actions.min())} "
                f"to {int(actions.max())}"
            )
        legal = self._legal(legal_mask, logits)
        _, log_probs = _masked_log_softmax(logits, legal)
        # Training code detects divergence from a NaN loss (the train-stability probe counts
        # the first non-finite step without a sync per step): bad logits propagate here.
        _check_values(obs, logits, legal, log_probs, refuse_bad_logits=False)
        log_probs = log_probs.clamp_min(torch.finfo(log_probs.dtype).min)
        actions = actions.long().to(log_probs.device)
        if legal is not None:
            chosen = legal.expand(logits.shape[0], -1).gather(-1, actions.unsqueeze(-1))
            if not bool(chosen.all()):
                raise InputError(f"actions in rows {_rows(~chosen.squeeze(-1))} are illegal under legal_mask")
        log_prob = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return log_prob, _entropy(log_probs), value.to(log_prob.dtype)
