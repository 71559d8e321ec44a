"""The core's strategy and probe contracts, run the way `keisei bench` runs them."""

from __future__ import annotations

import importlib.util

from keisei_core.testing import ProbeContract, StrategyContract

MODELS: list[str | tuple[str, dict[str, object]]] = [("actor-critic", {"conv_channels": 4, "num_actions": 300})]
if importlib.util.find_spec("keisei_plugin_restower") is not None:
    MODELS.append(("restower-small", {"depth": 1, "width": 8, "num_actions": 300}))
if importlib.util.find_spec("keisei_plugin_research") is not None:
    # A weight-tied block applied repeatedly; the other two families' gradients are
    # compared with eager's in test_checkpointing.py.
    MODELS.append(("cell-lattice-tiny", {"num_actions": 300}))


class TestActivationCheckpointingContract(StrategyContract):
    # actor-critic declares no repeated blocks: the contract sees it declined and skips it.
    strategy_name = "activation-checkpointing"
    models = MODELS


class TestTrainingProbesContract(ProbeContract):
    probe_names = ("train-stability", "train-memory")
    batch_sizes = (4,)
