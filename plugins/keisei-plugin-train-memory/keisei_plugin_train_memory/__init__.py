"""keisei-plugin-train-memory: the ``activation-checkpointing`` strategy and the
``train-stability`` and ``train-memory`` probes. The plugin module is
:mod:`keisei_plugin_train_memory.plugin`."""

__version__ = "0.1.0"
