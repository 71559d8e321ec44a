"""keisei-plugin-fused-se: one fused operator for the whole squeeze-excitation unit.

- :mod:`.ops`: the ``keisei_fused_se::se_unit`` custom op (C++ CPU kernel, Triton GPU
  kernels, fake and autograd registrations).
- :mod:`.module`: ``FusedSEUnit`` and ``fuse_se_units(model)``, the swap the ``fused-se``
  strategy applies.
- :mod:`.reference`: the same unit in plain PyTorch ops, which the tests compare against.
- :mod:`.plugin`: the keisei registrations (strategy ``fused-se``, probe ``se-op``).

Importing this package does not import torch or the C++ library; :mod:`.ops` does.
"""

__version__ = "0.1.0"
