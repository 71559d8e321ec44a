"""keisei-plugin-distributed: the ``train-step-ddp`` probe (keisei's PPO update step under
torch.distributed's DistributedDataParallel) and a runner for ``torchrun``.

The plugin module is :mod:`keisei_plugin_distributed.plugin`; nothing imported here
imports torch.
"""

__version__ = "0.1.0"
