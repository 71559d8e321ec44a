"""keisei-plugin-openvino: run keisei models with OpenVINO's CPU plugin, and compare against peers.

The entry point is :mod:`keisei_plugin_openvino.plugin` (imports neither torch nor
openvino). :mod:`.strategy` holds the strategies' ``apply``, :mod:`.convert` the
torch.export -> OpenVINO conversion and its on-disk IR cache, :mod:`.runtime` the
compiled model and the forward wrapper that calls it, :mod:`.peers` the ``peers`` probe
and :mod:`.peer_table` its markdown table.
"""

from __future__ import annotations

__version__ = "0.1.0"
