"""keisei-plugin-onnxruntime: run keisei models in an ONNX Runtime CPU session.

The entry point is :mod:`keisei_plugin_onnxruntime.plugin` (imports neither torch nor
onnxruntime). :mod:`.strategy` is the ``apply`` function, :mod:`.export` the exporter
and its on-disk cache, :mod:`.runtime` the session and the forward that calls it.
"""

from __future__ import annotations

__version__ = "0.1.0"
